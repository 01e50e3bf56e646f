//! Facts: one command per host, and a parser. Gathered once per host per run.

use serde_json::{json, Map, Value};

/// Prints `key=value` lines; everything the playbooks need, in one round trip.
pub const SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null
echo "os_id=$ID"; echo "os_version=$VERSION_ID"; echo "os_like=$ID_LIKE"; echo "os_codename=$VERSION_CODENAME"; echo "os_name=$NAME"
# Shell builtins where they do: every process started here costs on a busy host.
h=; read -r h < /proc/sys/kernel/hostname 2>/dev/null || h=$(hostname)
echo "hostname=$h"
echo "fqdn=$(hostname -f 2>/dev/null || echo "$h")"
while read -r k v _; do if [ "$k" = "MemTotal:" ]; then echo "mem_kb=$v"; break; fi; done < /proc/meminfo
# The CPUs this shell may run on (what nproc counts), from its own status.
n=0; while read -r k v; do
  [ "$k" = Cpus_allowed_list: ] || continue
  IFS=,; for r in $v; do case "$r" in *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;; *) n=$((n + 1)) ;; esac; done; unset IFS
done < /proc/self/status
[ "$n" -gt 0 ] || n=$(nproc 2>/dev/null || echo 1)
echo "cpus=$n"
dev=; gw=
set -- $(ip -4 route show default 2>/dev/null)
while [ $# -gt 1 ]; do case "$1" in dev) dev=$2 ;; via) gw=$2 ;; esac; shift; done
addrs=; daddr=
out=$(ip -4 -o addr show scope global 2>/dev/null)
while read -r _ ifc line; do
  set -- $line
  while [ $# -gt 1 ] && [ "$1" != inet ]; do shift; done
  [ "$1" = inet ] || continue
  a=$2
  [ -n "$dev" ] || dev=$ifc
  if [ "$ifc" = "$dev" ] && [ -z "$daddr" ]; then daddr=$a; fi
  addrs="$addrs${a%%/*} "
done <<EOF
$out
EOF
echo "default_dev=$dev"; echo "default_gw=$gw"; echo "default_addr=$daddr"
mac=; [ -n "$dev" ] && read -r mac < /sys/class/net/"$dev"/address 2>/dev/null
echo "default_mac=$mac"
df -P -B1 --output=target,size,avail 2>/dev/null | { read -r _; while read -r t sz av; do echo "mount=$t $sz $av"; done; }
echo "all_addrs=$addrs"
if [ -d /run/systemd/system ]; then echo "systemd=yes"; else echo "systemd=no"; fi
# systemd writes what container it runs in at boot; systemd-detect-virt looks further.
virt=; [ -f /run/systemd/container ] && read -r virt < /run/systemd/container
[ -n "$virt" ] || virt=$(systemd-detect-virt -c 2>/dev/null)
[ -n "$virt" ] || { [ -f /.dockerenv ] && virt=docker; }
echo "container=$virt"
uid=; while read -r k v _; do [ "$k" = Uid: ] && { uid=$v; break; }; done < /proc/self/status
user=; while IFS=: read -r name _ u _; do [ "$u" = "$uid" ] && { user=$name; break; }; done < /etc/passwd
if [ -z "$uid" ] || [ -z "$user" ]; then ids=$(id); uid=${ids#uid=}; user=${uid#*(}; user=${user%%)*}; uid=${uid%%(*}; fi
echo "user=$user"; echo "uid=$uid"
set -- $(uname -r -m); echo "arch=$2"; echo "kernel=$1"
echo "pkg_mgr=$(command -v apt-get >/dev/null && echo apt || { command -v dnf >/dev/null && echo dnf; })"
"#;

fn family(id: &str, like: &str) -> &'static str {
    let any =
        |names: &[&str]| names.contains(&id) || like.split_whitespace().any(|l| names.contains(&l));
    if any(&["debian", "ubuntu"]) {
        "Debian"
    } else if any(&["rhel", "centos", "fedora", "rocky", "almalinux", "ol"]) {
        "RedHat"
    } else if any(&["suse", "opensuse", "sles"]) {
        "Suse"
    } else {
        "Unknown"
    }
}

fn distribution(id: &str) -> String {
    match id {
        "debian" => "Debian".into(),
        "ubuntu" => "Ubuntu".into(),
        "rhel" => "RedHat".into(),
        "centos" => "CentOS".into(),
        "rocky" => "Rocky".into(),
        "almalinux" => "AlmaLinux".into(),
        "fedora" => "Fedora".into(),
        "ol" => "OracleLinux".into(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    }
}

fn netmask(prefix: u32) -> String {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(mask).to_string()
}

/// Turns the script's output into Ansible-named facts (`ansible_distribution`, ...).
pub fn parse(output: &str) -> Map<String, Value> {
    let get = |k: &str| -> String {
        output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let (id, version) = (get("os_id"), get("os_version"));
    let mem_mb = get("mem_kb").parse::<u64>().unwrap_or(0) / 1024;
    let cpus = get("cpus").parse::<u64>().unwrap_or(1);
    let addr_cidr = get("default_addr");
    let (address, prefix) = match addr_cidr.split_once('/') {
        Some((a, p)) => (a.to_string(), p.parse::<u32>().unwrap_or(32)),
        None => (addr_cidr.clone(), 32),
    };
    let network = address
        .parse::<std::net::Ipv4Addr>()
        .map(|a| {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            std::net::Ipv4Addr::from(u32::from(a) & mask).to_string()
        })
        .unwrap_or_default();
    let container = get("container");
    let is_container = !container.is_empty() && container != "none";
    let mut f = Map::new();
    let mut set = |k: &str, v: Value| {
        f.insert(format!("ansible_{k}"), v);
    };
    set("distribution", Value::String(distribution(&id)));
    set("distribution_version", Value::String(version.clone()));
    set(
        "distribution_major_version",
        Value::String(version.split('.').next().unwrap_or_default().to_string()),
    );
    set("distribution_release", Value::String(get("os_codename")));
    set(
        "os_family",
        Value::String(family(&id, &get("os_like")).into()),
    );
    set(
        "hostname",
        Value::String(
            get("hostname")
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
    );
    set("nodename", Value::String(get("hostname")));
    set("fqdn", Value::String(get("fqdn")));
    set("memtotal_mb", json!(mem_mb));
    set("processor_vcpus", json!(cpus));
    set("processor_cores", json!(cpus));
    set("processor_count", json!(1));
    set(
        "default_ipv4",
        json!({
            "address": address, "interface": get("default_dev"), "netmask": netmask(prefix),
            "prefix": prefix.to_string(), "network": network, "gateway": get("default_gw"),
            "macaddress": get("default_mac"),
        }),
    );
    set(
        "all_ipv4_addresses",
        Value::Array(
            get("all_addrs")
                .split_whitespace()
                .map(|a| Value::String(a.into()))
                .collect(),
        ),
    );
    // Ansible's shape: one entry per mounted filesystem, sizes in bytes.
    let mounts = output
        .lines()
        .filter_map(|l| l.strip_prefix("mount="))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (mount, total, avail) = (w.next()?, w.next()?, w.next()?);
            Some(json!({
                "mount": mount,
                "size_total": total.parse::<u64>().ok()?,
                "size_available": avail.parse::<u64>().ok()?,
            }))
        })
        .collect();
    set("mounts", Value::Array(mounts));
    set(
        "service_mgr",
        Value::String(
            if get("systemd") == "yes" {
                "systemd"
            } else {
                "other"
            }
            .into(),
        ),
    );
    set(
        "virtualization_type",
        Value::String(if is_container {
            container.clone()
        } else {
            String::new()
        }),
    );
    set(
        "virtualization_role",
        Value::String(if is_container { "guest" } else { "" }.into()),
    );
    set("is_container", Value::Bool(is_container));
    set("user_id", Value::String(get("user")));
    set("user_uid", json!(get("uid").parse::<u64>().unwrap_or(0)));
    set("architecture", Value::String(get("arch")));
    set("kernel", Value::String(get("kernel")));
    set("pkg_mgr", Value::String(get("pkg_mgr")));
    // Ansible also offers them without the prefix under `ansible_facts`.
    let short: Map<String, Value> = f
        .iter()
        .map(|(k, v)| (k.trim_start_matches("ansible_").to_string(), v.clone()))
        .collect();
    f.insert("ansible_facts".into(), Value::Object(short));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_container() {
        let out = "os_id=debian\nos_version=12\nos_like=\nos_codename=bookworm\nhostname=pg1\nfqdn=pg1\nmem_kb=24000000\ncpus=2\n\
                   default_dev=host0\ndefault_gw=10.77.0.1\ndefault_addr=10.77.0.11/24\ndefault_mac=0a:1b:2c:3d:4e:5f\nmount=/ 1000 400\nmount=/var/lib 2000 1500\nall_addrs=10.77.0.11 10.77.0.100 \nsystemd=yes\ncontainer=systemd-nspawn\nuser=root\nuid=0\n";
        let f = parse(out);
        assert_eq!(f["ansible_distribution"], "Debian");
        assert_eq!(f["ansible_os_family"], "Debian");
        assert_eq!(f["ansible_distribution_major_version"], "12");
        assert_eq!(f["ansible_memtotal_mb"], 23437);
        assert_eq!(f["ansible_default_ipv4"]["address"], "10.77.0.11");
        assert_eq!(f["ansible_default_ipv4"]["netmask"], "255.255.255.0");
        assert_eq!(f["ansible_default_ipv4"]["network"], "10.77.0.0");
        assert_eq!(f["ansible_default_ipv4"]["interface"], "host0");
        assert_eq!(f["ansible_is_container"], true);
        assert_eq!(f["ansible_default_ipv4"]["macaddress"], "0a:1b:2c:3d:4e:5f");
        assert_eq!(f["ansible_mounts"][1]["mount"], "/var/lib");
        assert_eq!(f["ansible_mounts"][1]["size_available"], 1500);
        assert_eq!(f["ansible_all_ipv4_addresses"][1], "10.77.0.100");
        assert_eq!(f["ansible_facts"]["distribution"], "Debian");
    }
}
