//! Real `coffer-vault node` processes on loopback for the process tests: a
//! fleet made by `coffer-vault fleet create`, its nodes started, crashed and
//! restarted, and the real client pointed at it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_vault::node::FleetPublic;
use coffer_vault_client::{PinnedFleetKey, SecretBox, SecretString, VaultClient};

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer-vault");
/// The test fleets' outbox (relative to the fleet directory).
pub const OUTBOX: &str = "outbox.jsonl";

/// One node process, started from its config file, its stderr appended to
/// its log file.
pub struct Proc {
    config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,coffer_hsm=debug,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn coffer-vault node");
        self.child = Some(child);
    }

    /// SIGKILL: a crash, not a clean stop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// How the process ended, if it did (it is then no longer running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fleet's processes and its directory (configs, `.nvram` counters,
/// data directories, node logs).
pub struct Fleet {
    pub procs: Arc<Mutex<Vec<Proc>>>,
    pub public: FleetPublic,
    dir: tempfile::TempDir,
}

pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A temporary directory; COFFER_TEST_KEEP=1 keeps it (configs, data, node
/// logs) for a post-mortem.
pub fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("COFFER_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("fleet directory kept: {}", dir.path().display());
    }
    dir
}

/// Runs `coffer-vault fleet create` for `n` nodes on free loopback ports,
/// their mail to the outbox, no throttle.
pub fn create(dir: &Path, n: usize, limit: u32) -> FleetPublic {
    create_with(
        dir,
        n,
        limit,
        &["--mail-outbox", OUTBOX, "--throttle", "off"],
    )
}

/// [`create`] with `extra` arguments instead of the outbox and throttle ones.
pub fn create_with(dir: &Path, n: usize, limit: u32, extra: &[&str]) -> FleetPublic {
    let ports: Vec<String> = free_ports(2 * n).iter().map(u16::to_string).collect();
    let (ports, fleet_ports) = ports.split_at(n);
    let out = Command::new(BIN)
        .args([
            "fleet",
            "create",
            "--nodes",
            &n.to_string(),
            "--fleet-id",
            "proc-test",
            "--local-timings",
        ])
        .args(extra)
        .args([
            "--guess-limit",
            &limit.to_string(),
            "--ports",
            &ports.join(","),
            "--fleet-ports",
            &fleet_ports.join(","),
        ])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public: FleetPublic = serde_json::from_slice(&out.stdout).unwrap();
    // The config files hold HSM keys: private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("node-1.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "node config is private");
    }
    public
}

/// A new fleet of `n` nodes with guess limit `limit`, started and ready.
pub async fn start_fleet(n: usize, limit: u32) -> Fleet {
    let dir = test_dir();
    let public = create(dir.path(), n, limit);
    let f = Fleet::at(dir, public);
    f.start_all();
    f.wait_ready().await;
    f
}

impl Fleet {
    /// The fleet made by `create` in `dir` (or a copy of that directory),
    /// no node started.
    pub fn at(dir: tempfile::TempDir, public: FleetPublic) -> Fleet {
        let procs: Vec<Proc> = (1..=public.urls.len())
            .map(|i| Proc {
                config: dir.path().join(format!("node-{i}.toml")),
                log: dir.path().join(format!("node-{i}.log")),
                child: None,
            })
            .collect();
        Fleet {
            procs: Arc::new(Mutex::new(procs)),
            public,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s data directory (`i` from 0).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("node-{}", i + 1))
    }

    /// A client whose account tickets come from the fleet's outbox.
    pub fn client(&self) -> VaultClient {
        self.bare_client().with_ticket_source(self.tickets())
    }

    /// A client without tickets (a stranger's).
    pub fn bare_client(&self) -> VaultClient {
        let key = PinnedFleetKey::parse(&self.public.fleet_key).unwrap();
        VaultClient::http(&self.public.urls.join(","), Arc::new(key)).unwrap()
    }

    /// Tickets through the nodes' account services and the outbox.
    pub fn tickets(&self) -> Arc<dyn coffer_vault_client::TicketSource> {
        Arc::new(coffer_vault::account::OutboxTickets {
            transport: Arc::new(
                coffer_vault_client::HttpTransport::with_urls(
                    &self.public.urls,
                    Duration::from_secs(30),
                )
                .unwrap(),
            ),
            outbox: self.dir().join(OUTBOX),
        })
    }

    pub fn kill(&self, i: usize) {
        self.procs.lock().unwrap()[i].kill();
    }

    pub fn start(&self, i: usize) {
        self.procs.lock().unwrap()[i].start();
    }

    pub fn start_all(&self) {
        for p in self.procs.lock().unwrap().iter_mut() {
            p.start();
        }
    }

    pub fn kill_all(&self) {
        for p in self.procs.lock().unwrap().iter_mut() {
            p.kill();
        }
    }

    pub fn running(&self) -> Vec<usize> {
        self.procs
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.running())
            .map(|(i, _)| i)
            .collect()
    }

    /// Until the fleet answers status with a quorum (bounded).
    pub async fn wait_ready(&self) {
        let c = self.client();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(s) = c.status().await {
                if s.info.quorum {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fleet not ready: {}", self.logs());
    }

    pub fn all_logs(&self) -> String {
        let procs = self.procs.lock().unwrap();
        procs
            .iter()
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .collect()
    }

    pub fn logs(&self) -> String {
        let procs = self.procs.lock().unwrap();
        procs
            .iter()
            .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
            .map(|s| s.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

pub fn code(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

pub fn key(b: u8) -> SecretBox<[u8; 32]> {
    SecretBox::new(Box::new([b; 32]))
}
