//! The embedded default: a private PostgreSQL cluster under the data
//! directory, started with the machine's own `initdb`/`pg_ctl`/`postgres`,
//! reachable only through a Unix socket.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};
use sqlx::postgres::PgConnectOptions;

const PORT: u16 = 5432;
const NO_BINARIES: &str =
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in PATH or \
/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`), point \
TIDELOG_POSTGRES_BIN at their directory, or set DATABASE_URL to an existing database";

/// Extra server settings for a cluster (e.g. relaxed durability for tests).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub settings: Vec<(String, String)>,
    pub bin_dir: Option<PathBuf>,
    /// libraries preloaded when the installation has them (the bench's
    /// `pg_stat_statements`); a missing one is left out
    pub preload_if_installed: Vec<String>,
}

#[derive(Debug)]
pub struct EmbeddedPostgres {
    root: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    started_here: bool,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_binaries(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = explicit {
        return if has_all(d) {
            Ok(d.to_path_buf())
        } else {
            Err(anyhow!(
                "TIDELOG_POSTGRES_BIN={}: {NO_BINARIES}",
                d.display()
            ))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_all(&d) {
                return Ok(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_all(d))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, d)| d)
        .ok_or_else(|| anyhow!(NO_BINARIES))
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as `postgres`.
fn cluster_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .context("looking up the postgres user")?
        .ok_or_else(|| anyhow!("running as root needs a `postgres` system user to own the embedded cluster (created by the postgresql package), or run as a normal user"))?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts the cluster under `root`, or
    /// attaches to it when it is already running.
    pub fn start(root: &Path, opts: &ClusterOptions) -> anyhow::Result<Self> {
        let bin_dir = find_binaries(opts.bin_dir.as_deref())?;
        let run_as = cluster_user()?;
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root.canonicalize()?;
        let me = Self {
            root,
            bin_dir,
            run_as,
            started_here: false,
        };
        std::fs::create_dir_all(me.socket_dir())?;
        me.own(&me.root, 0o700)?;
        me.own(&me.socket_dir(), 0o700)?;
        if let Some((uid, _)) = run_as {
            me.check_reachable(uid)?;
        }
        if !me.data_dir().join("PG_VERSION").exists() {
            me.initdb(opts)?;
        }
        if me.is_running() {
            tracing::info!(root = %me.root.display(), "embedded PostgreSQL already running; attaching");
            return Ok(me);
        }
        me.pg_ctl_start()?;
        Ok(Self {
            started_here: true,
            ..me
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.socket_dir())
            .port(PORT)
            .username("postgres")
            .database(database)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LC_ALL", "C")
            .env("LANG", "C")
            .env_remove("PGDATA")
            .current_dir(&self.root);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn own(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
                .with_context(|| format!("chown {} to postgres", path.display()))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// The cluster user must be able to reach its directory.
    fn check_reachable(&self, uid: u32) -> anyhow::Result<()> {
        let mut dir = self.root.parent();
        while let Some(d) = dir {
            let meta = std::fs::metadata(d)?;
            let mode = meta.permissions().mode();
            let others_x = mode & 0o001 != 0;
            let owner_x = std::os::unix::fs::MetadataExt::uid(&meta) == uid && mode & 0o100 != 0;
            if !others_x && !owner_x {
                bail!(
                    "the postgres user cannot enter {} (mode {:o}); choose a TIDELOG_DATA_DIR outside it (e.g. /var/lib/tidelog) or set DATABASE_URL",
                    d.display(),
                    mode & 0o777
                );
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn initdb(&self, opts: &ClusterOptions) -> anyhow::Result<()> {
        tracing::info!(dir = %self.data_dir().display(), "initialising embedded PostgreSQL cluster");
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut conf = format!(
            "\n# tidelog embedded cluster: Unix socket only\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\nmax_connections = 200\n",
            self.socket_dir().display()
        );
        for (k, v) in &opts.settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        let preload: Vec<&str> = opts
            .preload_if_installed
            .iter()
            .filter(|lib| self.has_library(lib))
            .map(String::as_str)
            .collect();
        if !preload.is_empty() {
            conf.push_str(&format!(
                "shared_preload_libraries = '{}'\n",
                preload.join(",")
            ));
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))?
            .write_all(conf.as_bytes())?;
        Ok(())
    }

    /// Whether the installation has the server library `name` (in
    /// `pg_config --pkglibdir`, or beside `bin` as Debian and the PGDG
    /// packages lay it out), found from the real `postgres` binary (the
    /// one in PATH may be a link).
    fn has_library(&self, name: &str) -> bool {
        let Some(bin) = std::fs::canonicalize(self.bin_dir.join("postgres"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        else {
            return false;
        };
        let pkglib = Command::new(bin.join("pg_config"))
            .arg("--pkglibdir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|| bin.join("../lib"));
        pkglib.join(format!("{name}.so")).exists()
    }

    /// The postmaster's pid from its lock file, if that process is alive (a
    /// zombie left by a crash, which nobody reaped, does not count).
    fn live_postmaster(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        (state != "Z" && state != "X").then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        if self.live_postmaster().is_none() {
            return false;
        }
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        tracing::info!(dir = %self.data_dir().display(), "starting embedded PostgreSQL");
        let pid_file = self.data_dir().join("postmaster.pid");
        if pid_file.exists() && self.live_postmaster().is_none() {
            tracing::warn!("removing the lock file of a postmaster that is gone (crash); PostgreSQL will recover");
            std::fs::remove_file(&pid_file)?;
        }
        // Backends of a killed postmaster may take a moment to exit and free
        // shared memory: retry briefly.
        let mut attempt = 0;
        loop {
            match self.pg_ctl_start_once() {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "PostgreSQL did not start; retrying");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn pg_ctl_start_once(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root.join("postgres.log"))
            .args(["-w", "-t", "120", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "PostgreSQL did not start: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown: sessions are closed, data is safe).
    pub fn stop(&self) -> anyhow::Result<()> {
        tracing::info!("stopping embedded PostgreSQL");
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("pg_ctl stop failed ({status})");
        }
        Ok(())
    }
}
