//! The lab's network: one bridge with the subnet's first address, a veth per node.
//!
//! Nothing is forwarded or NATed beyond the bridge, so the hosts have no internet.

use super::{run, BRIDGE};
use anyhow::{anyhow, bail, Result};
use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;

/// An IPv4 subnet such as 10.77.0.0/24.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Subnet> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            anyhow!("subnet `{s}` must be written as ADDRESS/PREFIX, e.g. 10.77.0.0/24")
        })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| anyhow!("subnet `{s}`: `{addr}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| anyhow!("subnet `{s}`: bad prefix"))?;
        if !(8..=24).contains(&prefix) {
            bail!("subnet `{s}`: the prefix must be between /8 and /24 (the lab uses host numbers up to 100)");
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    /// The address `n` hosts into the subnet (1 is the bridge).
    pub fn host(&self, n: u32) -> Result<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        if n == 0 || n >= size - 1 {
            bail!("host number {n} does not fit in {self}");
        }
        Ok(Ipv4Addr::from(u32::from(self.network) + n))
    }
}

pub(super) fn create_bridge(subnet: &Subnet) -> Result<()> {
    run(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]))?;
    let addr = format!("{}/{}", subnet.host(1)?, subnet.prefix);
    run(Command::new("ip").args(["addr", "add", &addr, "dev", BRIDGE]))?;
    run(Command::new("ip").args(["link", "set", BRIDGE, "up"]))?;
    Ok(())
}

pub(super) fn delete_bridge() -> Result<()> {
    let exists = Command::new("ip")
        .args(["link", "show", BRIDGE])
        .output()?
        .status
        .success();
    if exists {
        run(Command::new("ip").args(["link", "delete", BRIDGE]))?;
    }
    Ok(())
}

/// The host side of a node's veth, as systemd-nspawn names it (`vb-` + machine name, at most
/// 15 characters).
fn veth(name: &str) -> String {
    let mut v = format!("vb-{name}");
    v.truncate(15);
    v
}

pub(super) fn set_link(name: &str, up: bool) -> Result<()> {
    run(Command::new("ip").args(["link", "set", &veth(name), if up { "up" } else { "down" }]))?;
    Ok(())
}

pub(super) fn link_is_up(name: &str) -> Option<bool> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", &veth(name)])
        .output()
        .ok()?;
    out.status.success().then(|| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        !text.contains("state DOWN") && text.contains(",UP")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s: Subnet = "10.77.0.9/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.77.0.0/24");
        assert_eq!(s.host(11).unwrap(), Ipv4Addr::new(10, 77, 0, 11));
        assert!(s.host(255).is_err());
        assert!("10.77.0.0/30".parse::<Subnet>().is_err());
        assert!("10.77.0.0".parse::<Subnet>().is_err());
        assert_eq!(veth("pgnode01"), "vb-pgnode01");
    }
}
