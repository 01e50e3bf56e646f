//! pgdeploy's command line: parses arguments and calls one function per command.

use clap::{Parser, Subcommand};
use pgdeploy::cli::{self, Common};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pgdeploy",
    version,
    about = "Deploy and operate highly available PostgreSQL clusters over SSH"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy or converge the whole cluster (Type A or Type B).
    Cluster {
        #[command(flatten)]
        common: Common,
    },
    /// Add PostgreSQL replicas and/or balancer hosts to a running cluster.
    AddNode {
        #[command(flatten)]
        common: Common,
    },
    /// Point-in-time recovery of the cluster from pgBackRest.
    Restore {
        /// The time to recover to (e.g. "2026-11-22 10:00:00+00"), or `latest`.
        #[arg(long)]
        pitr: String,
        /// Recover along this timeline (default: the one the cluster is on now).
        #[arg(long)]
        timeline: Option<u32>,
        /// The cluster's name (patroni_cluster_name), confirming the restore without a prompt.
        #[arg(long)]
        confirm: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove the cluster (refuses without --unsafe and the cluster name confirmed).
    Remove {
        /// Really remove it (data directories included).
        #[arg(long = "unsafe")]
        unsafe_: bool,
        /// The cluster's name (patroni_cluster_name), confirming the removal without a prompt.
        #[arg(long)]
        confirm: Option<String>,
        /// Remove the cluster's backups from the repository too.
        #[arg(long)]
        remove_backups: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Take one database host out of the cluster (its data directory stays unless --unsafe).
    RemoveNode {
        /// The host to take out (its inventory name).
        #[arg(long, value_name = "HOST")]
        node: String,
        /// If the host is the leader, hand leadership to another member first.
        #[arg(long)]
        switchover: bool,
        /// Delete its data directory and Patroni configuration too.
        #[arg(long = "unsafe")]
        unsafe_: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Read-only health report of the cluster.
    Check {
        /// Ask again every SECONDS and print each report, until interrupted (Ctrl-C); the exit
        /// code is the last report's.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Local test hosts (systemd-nspawn) and faults to inject into them.
    Lab {
        #[arg(value_parser = ["up", "add", "down", "status", "stop", "start", "cut", "heal"])]
        action: String,
        /// The host for stop, start, cut and heal (e.g. pgnode02).
        node: Option<String>,
        /// How many database hosts `lab up` makes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// No backup host: by default `lab up` adds `pgbackup` (.20, group `pgbackrest`).
        #[arg(long)]
        no_backup_host: bool,
        /// `lab add`: a balancer (pgbalNN, in [balancers]) instead of a database host.
        #[arg(long)]
        balancer: bool,
        /// The lab's private subnet (the bridge takes .1, hosts .11, .12, ..., the VIP .100).
        #[arg(long, default_value = "10.77.0.0/24")]
        subnet: String,
        /// Where the lab writes its inventory, known_hosts, key and state.
        #[arg(long, default_value = "lab")]
        dir: PathBuf,
    },
    /// Download every component's packages, with dependencies, for hosts without internet.
    Bundle {
        #[arg(long)]
        out: PathBuf,
    },
    /// Run any playbook (the engine on its own).
    Run {
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Print a shell completion script: `pgdeploy completions bash > /etc/bash_completion.d/pgdeploy`.
    Completions { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { playbook, common } => match cli::run_playbook(&common, &playbook).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::Cluster { common } => match cli::cluster(&common).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::AddNode { common } => match cli::add_node(&common).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::Restore {
            pitr,
            timeline,
            confirm,
            common,
        } => match cli::restore(&common, &pitr, timeline, confirm).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::Remove {
            unsafe_,
            confirm,
            remove_backups,
            common,
        } => match cli::remove(&common, unsafe_, confirm, remove_backups).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::RemoveNode {
            node,
            switchover,
            unsafe_,
            common,
        } => match cli::remove_node(&common, &node, switchover, unsafe_).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::Check { watch, common } => match cli::check(&common, watch).await {
            Ok(code) => code,
            Err(e) => cli::report_error(&e),
        },
        Command::Lab {
            action,
            node,
            nodes,
            no_backup_host,
            balancer,
            subnet,
            dir,
        } => cli::lab(
            &action,
            node.as_deref(),
            nodes,
            !no_backup_host,
            balancer,
            &subnet,
            &dir,
        ),
        Command::Bundle { out } => match pgdeploy::bundle::build(&out) {
            Ok(()) => 0,
            Err(e) => cli::report_error(&e),
        },
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "pgdeploy", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(&script);
            0
        }
    };
    std::process::exit(code);
}
