//! The lab: test hosts on this machine (systemd-nspawn containers on a bridge).
//! Built in a later step; the CLI says so until then.
