//! The `diemcau` command line: clap types, and each subcommand dispatched to the
//! library (`app` for `serve`, `tools` for the rest) with what it prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use diemcau::app::App;
use diemcau::auth::{Role, SECRETS_FILE, Secrets, SecretsOrigin};
use diemcau::clock::SystemClock;
use diemcau::config::{Loaded, Sources};
use diemcau::tools::links::links_text;

/// diemcau ("điểm cầu"): bridge sites, liveness and live status for a hybrid conference.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

/// Where the configuration comes from (shared by the subcommands).
#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// Configuration file (TOML). Without it, the embedded defaults are used.
    #[arg(long, env = "DIEMCAU_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Roster of bridge sites (CSV: code,name,kind,former_district[,contact_name,contact_phone,probe]).
    /// Overrides the config's `sites`; default: the 92 shipped Thái Nguyên sites.
    #[arg(long, env = "DIEMCAU_SITES", value_name = "CSV")]
    sites: Option<PathBuf>,
    /// Agenda (CSV: order,unit,unit_kind,topic[,venue,slot_seconds]). Overrides the config's `agenda`.
    #[arg(long, env = "DIEMCAU_AGENDA", value_name = "CSV")]
    agenda: Option<PathBuf>,
    /// Directory for the SQLite store and secrets.toml (default: the config's data_dir, `./data`).
    #[arg(long, env = "DIEMCAU_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Action {
    /// Run the service (HTTP API, websockets, metrics).
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on, e.g. 0.0.0.0:8080 for the whole LAN (default: the config's, 127.0.0.1:8080).
        #[arg(long, env = "DIEMCAU_LISTEN", value_name = "ADDR")]
        listen: Option<String>,
        /// Log format on standard error.
        #[arg(long, env = "DIEMCAU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print every role URL and each site's join URL, to send to the organisers and communes.
    Links {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address the communes reach the service at, e.g. http://10.0.0.5:8080.
        #[arg(long, env = "DIEMCAU_BASE_URL", value_name = "URL")]
        base_url: String,
    },
    /// Manage keys: `diemcau keys rotate --site 05443` or `--role display`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// A headless bridge for a kiosk PC or a Raspberry Pi; with --rehearse, run the
    /// connection check and exit 0 (pass), 1 (warn), 2 (fail) or 3 (could not run).
    Agent {
        /// The service, e.g. http://10.0.0.5:8080 or https://diemcau.example.vn
        /// (ws:// and wss:// work too).
        #[arg(long, env = "DIEMCAU_SERVER", value_name = "URL")]
        server: String,
        /// For an https service signed by a private CA: its certificate (PEM), trusted
        /// beside the system's.
        #[arg(long, env = "DIEMCAU_CA", value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The site's 5-digit code, e.g. 05443.
        #[arg(long, env = "DIEMCAU_SITE", value_name = "ID")]
        site: String,
        /// The site's key (from its join link).
        #[arg(long, env = "DIEMCAU_KEY", value_name = "KEY", hide_env_values = true)]
        key: String,
        /// Run the rehearsal check (about two minutes) and exit with its verdict.
        #[arg(long)]
        rehearse: bool,
        /// The technician's name, stored with the check.
        #[arg(
            long,
            env = "DIEMCAU_TECHNICIAN",
            value_name = "NAME",
            default_value = "kỹ thuật xã"
        )]
        technician: String,
        /// Checklist items confirmed: camera,micro,loa,man_hinh,du_phong.
        #[arg(long, value_delimiter = ',', value_name = "ITEMS")]
        checked: Vec<String>,
        /// Confirm every roll call and message at once (a kiosk that is on is present);
        /// without it, roll calls and messages are printed only.
        #[arg(long, env = "DIEMCAU_CONFIRM")]
        confirm: bool,
    },
    /// Write a generated roster of N sites (CSV on standard output) and their keys into
    /// DIR/secrets.toml, for drills and benchmarks: `diemcau serve --sites` takes it.
    Roster {
        /// How many sites (ids 00001…).
        #[arg(long, value_name = "N")]
        synthetic: u32,
        /// Where the keys go (secrets.toml).
        #[arg(long, env = "DIEMCAU_DATA_DIR", value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Connect N simulated bridges (agent `sim`) and keep them alive, some with faults.
    Simulate {
        /// The service, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "DIEMCAU_SERVER", value_name = "URL")]
        server: String,
        /// How many sites to simulate (the first N of the keys file).
        #[arg(long, value_name = "N")]
        sites: usize,
        /// The service's keys file.
        #[arg(long, value_name = "FILE", default_value = "data/secrets.toml")]
        keys: PathBuf,
        /// Shares of sites with trouble, e.g. drop=0.05,late=0.05,silent=0.02,flap=0.02.
        #[arg(long, value_name = "SPEC", default_value = "")]
        faults: String,
        /// For an https service signed by a private CA: its certificate (PEM), trusted
        /// beside the system's.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Measure the service under N simulated bridges, side by side with a bare
    /// tokio-tungstenite echo server; prints a table and writes JSON.
    Bench {
        /// How many sites (a synthetic roster).
        #[arg(long, default_value_t = 3321)]
        sites: u32,
        /// How long the steady state is measured, for each of service and baseline.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Probe interval (the service's default is 2000).
        #[arg(long, default_value_t = 2000)]
        probe_interval_ms: u64,
        /// How many timer changes are fanned out (and timed), for each of service and
        /// baseline.
        #[arg(long, default_value_t = 100)]
        changes: u64,
        /// Where the JSON report goes.
        #[arg(long, value_name = "FILE", default_value = "bench.json")]
        json: PathBuf,
    },
    /// The bench's baseline: a bare websocket server that probes and reads echoes.
    #[command(hide = true)]
    BenchBaseline {
        #[arg(long)]
        listen: String,
        #[arg(long, default_value_t = 2000)]
        probe_interval_ms: u64,
    },
    /// Check the configuration, roster and agenda, and the data dir (keys, database,
    /// free disk), without starting or changing anything.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Copy the database and the keys while the service runs (a consistent snapshot,
    /// checked), into a new folder DIR/diemcau-YYYYMMDD-HHMMSS; safe to run from cron.
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// Where the backup folders go, e.g. /mnt/usb/diemcau.
        #[arg(long, env = "DIEMCAU_BACKUP_DIR", value_name = "DIR")]
        to: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Give one site or role a new key. A running service takes it within a second:
    /// the old key stops working and its open pages and sockets are closed.
    Rotate {
        /// The site whose key leaked or whose technician changed, e.g. 05443.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "role",
            conflicts_with = "role"
        )]
        site: Option<String>,
        /// The role whose key leaked.
        #[arg(long, value_name = "NAME", value_enum)]
        role: Option<RoleArg>,
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the new link with this base URL, e.g. http://10.0.0.5:8080.
        #[arg(long, env = "DIEMCAU_BASE_URL", value_name = "URL")]
        base_url: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Operator,
    Secretary,
    Display,
    Notifier,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Secretary => Role::Secretary,
            RoleArg::Display => Role::Display,
            RoleArg::Notifier => Role::Notifier,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

// Thousands of sockets connect at once after a restart; glibc's per-thread arenas keep
// the burst's freed handshake buffers resident (≈ 6 KiB a site), mimalloc gives them back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Action::Serve {
            config,
            listen,
            log_format,
        } => serve(config, listen, log_format),
        Action::Links { config, base_url } => links(config, &base_url),
        Action::Check { config } => check(config),
        Action::Backup { config, to } => backup(config, &to),
        Action::Keys {
            action:
                KeysAction::Rotate {
                    site,
                    role,
                    config,
                    base_url,
                },
        } => rotate(site, role, &config, base_url.as_deref()),
        Action::Roster {
            synthetic,
            data_dir,
        } => roster(synthetic, &data_dir),
        Action::Bench {
            sites,
            seconds,
            probe_interval_ms,
            changes,
            json,
        } => {
            let runtime = runtime()?;
            let options = diemcau::tools::bench::BenchOptions {
                sites,
                seconds,
                probe_interval_ms,
                changes,
            };
            let report = runtime.block_on(diemcau::tools::bench::run(options))?;
            print!("{}", report.table());
            std::fs::write(&json, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("cannot write {}", json.display()))?;
            println!("JSON: {}", json.display());
            Ok(())
        }
        Action::BenchBaseline {
            listen,
            probe_interval_ms,
        } => {
            let runtime = runtime()?;
            runtime.block_on(diemcau::tools::bench::baseline_server(
                &listen,
                probe_interval_ms,
            ))?;
            Ok(())
        }
        Action::Simulate {
            server,
            sites,
            keys,
            faults,
            ca,
        } => simulate(&server, sites, &keys, &faults, ca.as_deref()),
        Action::Agent {
            server,
            ca,
            site,
            key,
            rehearse,
            technician,
            checked,
            confirm,
        } => {
            let runtime = runtime()?;
            let options = diemcau::tools::agent::AgentOptions {
                server,
                ca,
                site,
                key,
                rehearse,
                technician,
                checked,
                confirm,
            };
            let code = runtime.block_on(diemcau::tools::agent::run(options))?;
            std::process::exit(code);
        }
    }
}

fn load(args: &ConfigArgs) -> anyhow::Result<(Loaded, PathBuf)> {
    let loaded = Loaded::load(&Sources {
        config: args.config.clone(),
        sites: args.sites.clone(),
        agenda: args.agenda.clone(),
    })?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| loaded.config.data_dir.clone());
    Ok((loaded, data_dir))
}

fn serve(args: ConfigArgs, listen: Option<String>, log_format: LogFormat) -> anyhow::Result<()> {
    init_logs(log_format);
    let (loaded, data_dir) = load(&args)?;
    let listen = listen.unwrap_or_else(|| loaded.config.listen.clone());
    let runtime = runtime()?;
    runtime.block_on(async move {
        let (sites, slots) = (loaded.roster.len(), loaded.agenda.len());
        let app = App::build(loaded, data_dir.clone(), &listen, Arc::new(SystemClock::new())).await?;
        let addr = app.local_addr();
        tracing::info!(%addr, sites, slots, data_dir = %data_dir.display(), "diemcau is serving");
        if app.secrets_origin() == SecretsOrigin::Created {
            let config = &app.state().config;
            let base = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            let base = base.trim_end_matches('/');
            let secrets = data_dir.join(SECRETS_FILE);
            let all_links = format!("diemcau links --base-url {base} --data-dir {}", data_dir.display());
            // Keys go to a person at a terminal, never into a log (journald keeps it).
            if std::io::stdout().is_terminal() {
                let keys = app.state().secrets.current();
                println!("Created {} with new keys (keep it private).", secrets.display());
                println!("Operator (bridge wall): {base}/wall?key={}", keys.role_key(Role::Operator).expose());
                println!("Admin:                  {base}/?key={}", keys.role_key(Role::Admin).expose());
                println!("All links (roles and the {sites} sites): {all_links}");
            } else {
                tracing::info!(secrets = %secrets.display(), "created new keys; to see the links, run: {all_links}");
            }
        }
        app.run(diemcau::app::shutdown_signal()).await.context("server failed")?;
        tracing::info!("stopped cleanly");
        anyhow::Ok(())
    })
}

fn links(args: ConfigArgs, base_url: &str) -> anyhow::Result<()> {
    let (loaded, data_dir) = load(&args)?;
    let base = base_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--base-url must start with http:// or https:// (e.g. http://10.0.0.5:8080)");
    }
    if !data_dir.join(SECRETS_FILE).exists() {
        bail!(
            "no keys yet in {}: start `diemcau serve --data-dir {}` once to create them",
            data_dir.join(SECRETS_FILE).display(),
            data_dir.display()
        );
    }
    let (secrets, _) = Secrets::load_or_create(&data_dir, &loaded.roster)?;
    print!("{}", links_text(&secrets, &loaded.roster, base));
    Ok(())
}

fn rotate(
    site: Option<String>,
    role: Option<RoleArg>,
    args: &ConfigArgs,
    base_url: Option<&str>,
) -> anyhow::Result<()> {
    let (loaded, data_dir) = load(args)?;
    let rotated = diemcau::tools::links::rotate(
        &data_dir,
        &loaded.roster,
        site.as_deref(),
        role.map(Role::from),
    )?;
    eprintln!(
        "New key for {} written to {}; a running service uses it within a second.",
        rotated.holder.label(),
        data_dir.join(SECRETS_FILE).display()
    );
    match base_url {
        Some(base) => println!(
            "{}{}?key={}",
            base.trim_end_matches('/'),
            rotated.page,
            rotated.key.expose()
        ),
        None => println!("{}", rotated.key.expose()),
    }
    Ok(())
}

fn roster(n: u32, data_dir: &std::path::Path) -> anyhow::Result<()> {
    diemcau::tools::roster::write_synthetic(n, data_dir, std::io::stdout().lock())?;
    eprintln!(
        "{n} sites; keys in {}",
        data_dir.join(SECRETS_FILE).display()
    );
    Ok(())
}

fn simulate(
    server: &str,
    n: usize,
    keys: &std::path::Path,
    faults: &str,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    runtime()?.block_on(diemcau::tools::simulate::run_until_ctrl_c(
        server, n, keys, faults, ca,
    ))?;
    Ok(())
}

fn backup(args: ConfigArgs, to: &std::path::Path) -> anyhow::Result<()> {
    let (_, data_dir) = load(&args)?;
    let backup = diemcau::tools::backup::run(&data_dir, to, chrono::Utc::now())?;
    let contents = &backup.contents;
    println!(
        "Đã sao lưu — backed up to {} ({} KiB): {} transitions, {} timer commands, {} rehearsal checks, {} messages and roll calls, and the keys.",
        backup.folder.display(),
        contents.bytes.div_ceil(1024),
        contents.transitions,
        contents.timer_commands,
        contents.rehearsals,
        contents.notices
    );
    println!(
        "The folder is a whole data dir: to carry on from it, stop the service and start it with --data-dir {}",
        backup.folder.display()
    );
    Ok(())
}

fn check(args: ConfigArgs) -> anyhow::Result<()> {
    let (loaded, data_dir) = load(&args)?;
    println!(
        "configuration OK: {} sites, {} presentations, listen {}",
        loaded.roster.len(),
        loaded.agenda.len(),
        loaded.config.listen,
    );
    println!("data dir {}:", data_dir.display());
    let report = diemcau::tools::preflight::inspect(&data_dir, &loaded.roster);
    for line in &report.lines {
        println!("  {line}");
    }
    for warning in &report.warnings {
        println!("  cảnh báo — warning: {warning}");
    }
    if !report.errors.is_empty() {
        bail!(
            "the data dir is not ready:\n  {}",
            report.errors.join("\n  ")
        );
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

fn init_logs(format: LogFormat) {
    diemcau::telemetry::init_logs(matches!(format, LogFormat::Json));
}
