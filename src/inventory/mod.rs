//! The inventory: hosts, groups and their variables, read from Ansible's INI or YAML format,
//! with `group_vars/` and `host_vars/` beside it.
//!
//! Everything is kept in definition order, because Ansible's users expect `groups['x'][0]` to be
//! the first host they wrote.

mod ini;
mod pattern;
mod yaml_inv;

pub use pattern::select_hosts;

use anyhow::{bail, Result};
use indexmap::{IndexMap, IndexSet};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A host and the variables written for it.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub name: String,
    pub vars: Map<String, Value>,
}

/// A group: its direct hosts, child groups and variables.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub hosts: IndexSet<String>,
    pub children: IndexSet<String>,
    pub vars: Map<String, Value>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: Option<PathBuf>,
    pub hosts: IndexMap<String, Host>,
    pub groups: IndexMap<String, Group>,
}

/// A TCP port as a connection variable writes it: 1 to 65535.
pub fn port_number(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// A connection variable that cannot work, named where the inventory writes it (before any
/// host is contacted): a port that is not one. A templated value is checked when it is used.
pub(super) fn check_connection_var(key: &str, value: &Value) -> Result<(), String> {
    if !matches!(key, "ansible_port" | "ansible_ssh_port") {
        return Ok(());
    }
    let port_ok = match value {
        Value::Number(n) => port_number(&n.to_string()).is_some(),
        Value::String(s) => s.contains("{{") || port_number(s).is_some(),
        _ => false,
    };
    if port_ok {
        return Ok(());
    }
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Err(format!(
        "{key} `{shown}` is not a port number (1-65535): fix it in the inventory"
    ))
}

/// The variables kept for one group or host in a group_vars/ or host_vars/ directory.
fn vars_for(dir: &Path, name: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for ext in ["", ".yml", ".yaml", ".json"] {
        let p = dir.join(format!("{name}{ext}"));
        if p.is_file() {
            out.extend(crate::yaml::load_mapping(&p)?);
        }
    }
    let sub = dir.join(name);
    if sub.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yml" | "yaml" | "json")
                    )
            })
            .collect();
        files.sort();
        for f in files {
            out.extend(crate::yaml::load_mapping(&f)?);
        }
    }
    Ok(out)
}

impl Inventory {
    /// Reads an inventory file.
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot read the inventory: {e}; pass an existing file with -i",
                path.display()
            )
        })?;
        let origin = path.display().to_string();
        let mut inv = if yaml_inv::looks_like_yaml(path, &text) {
            yaml_inv::parse(&text, &origin)?
        } else {
            ini::parse(&text, &origin)?
        };
        inv.path = Some(path.to_path_buf());
        inv.finish(&origin)?;
        if let Some(dir) = path.parent() {
            inv.load_var_dirs(dir)?;
        }
        Ok(inv)
    }

    /// Adds a host (`name` or `name:port`) with its variables, and puts it in `group` unless
    /// that is `all` or `ungrouped` (which `finish` fills).
    fn add_host(&mut self, name: &str, vars: &Map<String, Value>, group: &str) {
        let (name, port) = ini::split_port(name);
        let host = self.hosts.entry(name.clone()).or_insert_with(|| Host {
            name: name.clone(),
            ..Default::default()
        });
        if let Some(p) = port {
            host.vars.insert("ansible_port".into(), Value::from(p));
        }
        host.vars.extend(vars.clone());
        if group != "all" && group != "ungrouped" {
            self.group_mut(group).hosts.insert(name);
        }
    }

    /// A group by name, made empty when it is not there yet.
    fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Default::default()
            })
    }

    /// Parses YAML inventory text.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Inventory> {
        let mut inv = yaml_inv::parse(text, origin)?;
        inv.finish(origin)?;
        Ok(inv)
    }

    /// `group_vars/NAME` and `host_vars/NAME` beside the inventory, as Ansible reads them: a
    /// file (`NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`) or a directory of such files, read
    /// in name order. They override the variables written in the inventory file itself.
    fn load_var_dirs(&mut self, dir: &Path) -> Result<()> {
        for name in self.groups.keys().cloned().collect::<Vec<_>>() {
            let vars = vars_for(&dir.join("group_vars"), &name)?;
            self.groups[&name].vars.extend(vars);
        }
        for name in self.hosts.keys().cloned().collect::<Vec<_>>() {
            let vars = vars_for(&dir.join("host_vars"), &name)?;
            self.hosts[&name].vars.extend(vars);
        }
        Ok(())
    }

    /// Parses INI text (for tests and for inventories built in memory).
    pub fn from_ini(text: &str, origin: &str) -> Result<Inventory> {
        let mut inv = ini::parse(text, origin)?;
        inv.finish(origin)?;
        Ok(inv)
    }

    /// Adds `all` and `ungrouped` and rejects cycles among child groups.
    fn finish(&mut self, origin: &str) -> Result<()> {
        self.check_cycles(origin)?;
        let grouped: IndexSet<String> = self
            .groups
            .values()
            .flat_map(|g| g.hosts.iter().cloned())
            .collect();
        let ungrouped: IndexSet<String> = self
            .hosts
            .keys()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        self.groups
            .entry("ungrouped".into())
            .or_insert_with(|| Group {
                name: "ungrouped".into(),
                ..Default::default()
            })
            .hosts
            .extend(ungrouped);
        let top: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != "all" && !self.groups.values().any(|p| p.children.contains(*g)))
            .cloned()
            .collect();
        let all = self.groups.entry("all".into()).or_insert_with(|| Group {
            name: "all".into(),
            ..Default::default()
        });
        all.children.extend(top);
        Ok(())
    }

    fn check_cycles(&self, origin: &str) -> Result<()> {
        // Depth-first, each group explored once (`done`): a diamond of shared children is not
        // walked again for every path to it.
        fn visit<'a>(
            inv: &'a Inventory,
            name: &'a str,
            stack: &mut Vec<&'a str>,
            done: &mut std::collections::HashSet<&'a str>,
            origin: &str,
        ) -> Result<()> {
            if done.contains(name) {
                return Ok(());
            }
            if let Some(pos) = stack.iter().position(|s| *s == name) {
                let mut cycle: Vec<&str> = stack[pos..].to_vec();
                cycle.push(name);
                bail!(
                    "{origin}: child groups form a cycle: {}; remove one of these :children entries",
                    cycle.join(" -> ")
                );
            }
            stack.push(name);
            if let Some(g) = inv.groups.get(name) {
                for c in &g.children {
                    visit(inv, c, stack, done, origin)?;
                }
            }
            stack.pop();
            done.insert(name);
            Ok(())
        }
        let mut done = std::collections::HashSet::new();
        for name in self.groups.keys() {
            visit(self, name, &mut Vec::new(), &mut done, origin)?;
        }
        Ok(())
    }

    /// The inventory as it is once `host` has left: gone from every group.
    pub fn without(&self, host: &str) -> Inventory {
        let mut inv = self.clone();
        inv.hosts.shift_remove(host);
        for g in inv.groups.values_mut() {
            g.hosts.shift_remove(host);
        }
        inv
    }

    /// Every host of a group, its children's included, in order.
    pub fn group_hosts(&self, group: &str) -> Vec<String> {
        let mut out = IndexSet::new();
        self.collect_hosts(group, &mut out, &mut std::collections::HashSet::new());
        out.into_iter().collect()
    }

    /// Each group once: children shared by several parents (a diamond) are not walked again,
    /// which would take exponential time, and a cycle ends.
    fn collect_hosts<'a>(
        &'a self,
        group: &'a str,
        out: &mut IndexSet<String>,
        seen: &mut std::collections::HashSet<&'a str>,
    ) {
        if group == "all" {
            out.extend(self.hosts.keys().cloned());
            return;
        }
        if !seen.insert(group) {
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        out.extend(g.hosts.iter().cloned());
        for c in &g.children {
            self.collect_hosts(c, out, seen);
        }
    }

    /// The groups a host belongs to (directly or through parents), `all` excluded, sorted as
    /// Ansible sorts `group_names`.
    pub fn host_groups(&self, host: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != "all" && self.group_hosts(g).iter().any(|h| h == host))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Depth of a group below `all` (parents before children when merging vars).
    fn depth(&self, group: &str, memo: &mut std::collections::HashMap<String, usize>) -> usize {
        if group == "all" {
            return 0;
        }
        if let Some(d) = memo.get(group) {
            return *d;
        }
        // Set before the walk: a cycle of groups ends here instead of recursing forever.
        memo.insert(group.to_string(), 1);
        let parents: Vec<String> = self
            .groups
            .values()
            .filter(|p| p.children.contains(group))
            .map(|p| p.name.clone())
            .collect();
        let d = parents
            .iter()
            .map(|p| 1 + self.depth(p, memo))
            .max()
            .unwrap_or(1);
        memo.insert(group.to_string(), d);
        d
    }

    /// The host's inventory variables: group vars from `all` down to the deepest group (parents
    /// before children, then by name as Ansible does), then host vars.
    pub fn host_vars(&self, host: &str) -> Map<String, Value> {
        let mut groups: Vec<String> = self.host_groups(host);
        groups.push("all".into());
        let mut memo = std::collections::HashMap::new();
        groups.sort_by_key(|g| (self.depth(g, &mut memo), g.clone()));
        let mut vars = Map::new();
        for g in groups {
            if let Some(group) = self.groups.get(&g) {
                for (k, v) in &group.vars {
                    vars.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(h) = self.hosts.get(host) {
            for (k, v) in &h.vars {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars
    }

    /// `groups` as templates see it: every group name to its hosts.
    pub fn groups_value(&self) -> Map<String, Value> {
        self.groups
            .keys()
            .map(|g| {
                (
                    g.clone(),
                    Value::Array(self.group_hosts(g).into_iter().map(Value::String).collect()),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forty levels of two groups, each the child of both groups above it: 2^40 paths from
    /// the top to the host, walked once per group.
    #[test]
    fn diamond_shaped_groups_take_linear_time() {
        let mut text = String::from("[a40]\nh1\n");
        for i in 0..40 {
            for g in ["a", "b"] {
                text.push_str(&format!("[{g}{i}:children]\na{}\nb{}\n", i + 1, i + 1));
            }
        }
        text.push_str("[b40]\n[a0:vars]\nx=1\n");
        let inv = Inventory::from_ini(&text, "diamond.ini").unwrap();
        let start = std::time::Instant::now();
        assert_eq!(inv.group_hosts("a0"), vec!["h1".to_string()]);
        assert_eq!(
            inv.host_vars("h1").get("x"),
            Some(&Value::String("1".into()))
        );
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }

    const PGCLUSTER: &str = r#"
# postgresql_cluster's inventory, unchanged
[etcd_cluster]  # recommendation: 3, or 5-7 nodes
10.128.64.140
10.128.64.142
10.128.64.143

[balancers]
10.128.64.140 # balancer_tags="datacenter=dc1"
10.128.64.142

[master]
10.128.64.140 hostname=pgnode01 postgresql_exists=false

[replica]
10.128.64.142 hostname=pgnode02 postgresql_exists=false
10.128.64.143 hostname=pgnode03 postgresql_exists=false  new_node=true

[postgres_cluster:children]
master
replica

[pgbackrest]

[all:vars]
ansible_connection='ssh'
ansible_ssh_port='22'
ansible_user='root'
ansible_ssh_pass='secretpassword'  # "sshpass" package is required for use "ansible_ssh_pass"

[pgbackrest:vars]
ansible_user='postgres'
"#;

    #[test]
    fn postgresql_cluster_inventory_loads() {
        let inv = Inventory::from_ini(PGCLUSTER, "inventory").unwrap();
        assert_eq!(inv.hosts.len(), 3);
        assert_eq!(
            inv.group_hosts("postgres_cluster"),
            vec!["10.128.64.140", "10.128.64.142", "10.128.64.143"]
        );
        let v = inv.host_vars("10.128.64.142");
        assert_eq!(v["hostname"], "pgnode02");
        assert_eq!(v["ansible_user"], "root");
        assert_eq!(v["ansible_ssh_pass"], "secretpassword");
        assert_eq!(v["postgresql_exists"], "false");
        assert_eq!(inv.host_vars("10.128.64.143")["new_node"], "true");
        assert!(inv.group_hosts("pgbackrest").is_empty());
        assert_eq!(
            inv.host_groups("10.128.64.140"),
            vec!["balancers", "etcd_cluster", "master", "postgres_cluster"]
        );
    }

    #[test]
    fn child_group_vars_override_parent_vars() {
        let inv = Inventory::from_ini(
            "[a]\nh1\n[b:children]\na\n[b:vars]\nx=parent\n[a:vars]\nx=child\n[all:vars]\nx=all\ny=all\n",
            "inv",
        )
        .unwrap();
        let v = inv.host_vars("h1");
        assert_eq!(v["x"], "child");
        assert_eq!(v["y"], "all");
    }

    #[test]
    fn cycles_are_rejected() {
        let err = Inventory::from_ini("[a:children]\nb\n[b:children]\na\n", "inv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
        assert!(
            err.contains("a -> b -> a") || err.contains("b -> a -> b"),
            "{err}"
        );
    }

    const PGCLUSTER_YAML: &str = r#"
all:
  vars:
    ansible_user: root
  children:
    etcd_cluster:
      hosts:
        pgnode01: { ansible_host: 10.0.0.11 }
        pgnode[02:03]:
    master:
      hosts:
        pgnode01: { hostname: pg-one }
    replica:
      hosts:
        pgnode[02:03]:
          new_node: true
      vars:
        replica_only: yes
    postgres_cluster:
      children:
        master:
        replica:
balancers:
  hosts:
    lb1:2222:
"#;

    #[test]
    fn yaml_inventory_loads_like_ini() {
        let inv = Inventory::from_yaml(PGCLUSTER_YAML, "inv.yml").unwrap();
        assert_eq!(
            inv.group_hosts("postgres_cluster"),
            vec!["pgnode01", "pgnode02", "pgnode03"]
        );
        assert_eq!(inv.group_hosts("all").len(), 4);
        let v = inv.host_vars("pgnode01");
        assert_eq!(v["ansible_host"], "10.0.0.11");
        assert_eq!(v["hostname"], "pg-one");
        assert_eq!(v["ansible_user"], "root");
        let v = inv.host_vars("pgnode03");
        assert_eq!(v["new_node"], true);
        assert_eq!(v["replica_only"], true);
        assert_eq!(inv.host_vars("lb1")["ansible_port"], 2222);
    }

    #[test]
    fn yaml_inventory_errors_name_the_line() {
        let err = Inventory::from_yaml(
            "all:
  children:
    db:
      host:
        a:
",
            "inv.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("inv.yml:4:"), "{err}");
        assert!(err.contains("did you mean `hosts`"), "{err}");
        let err = Inventory::from_yaml(
            "all:
  hosts:
    a:
      ansible_host: 10.0.0.1
      ansible_port: twenty-two
",
            "inv.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("inv.yml:5: ansible_port `twenty-two` is not a port number"),
            "{err}"
        );
    }

    #[test]
    fn group_and_host_vars_directories_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let inv = dir.path().join("hosts.ini");
        std::fs::write(&inv, "[db]\na x=inline\nb\n[db:vars]\ny=inline\n").unwrap();
        std::fs::create_dir_all(dir.path().join("group_vars/all")).unwrap();
        std::fs::create_dir_all(dir.path().join("host_vars")).unwrap();
        std::fs::write(dir.path().join("group_vars/db.yml"), "y: from_group_vars\n").unwrap();
        std::fs::write(dir.path().join("group_vars/all/10.yml"), "z: one\n").unwrap();
        std::fs::write(dir.path().join("group_vars/all/20.yml"), "z: two\n").unwrap();
        std::fs::write(dir.path().join("host_vars/a"), "x: from_host_vars\n").unwrap();
        let inv = Inventory::load(&inv).unwrap();
        let a = inv.host_vars("a");
        assert_eq!(a["x"], "from_host_vars");
        assert_eq!(a["y"], "from_group_vars");
        assert_eq!(a["z"], "two");
        assert!(inv.host_vars("b").get("x").is_none());
    }
}
