//! Real storage servers for off-site tests, each on loopback ports of its
//! own with its own data folder: a one-node Garage (S3-compatible, from
//! crates.io: `cargo install garage --locked`, which `scripts/setup.sh`
//! does) and OpenSSH's `sshd` serving `sftp-server` with its own host key
//! and a client key made here (no system configuration is touched; as root
//! the privilege-separation folder `/run/sshd` is created if missing, as the
//! Debian service would).

use crate::Proc;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until `f` returns `Some`, up to `secs`; panics with `what` after.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{cmd:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The `garage` binary: `$COFFER_GARAGE`, `~/.cargo/bin/garage` or the PATH.
pub fn garage_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("COFFER_GARAGE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = home.map(|h| h.join("bin/garage")).filter(|p| p.exists()) {
        return p;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v garage"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.unwrap_or_else(|| {
        panic!(
            "`garage` is not installed: run scripts/setup.sh (it runs `cargo install garage \
             --locked`, ~14 min on 2 cores, once)"
        )
    })
}

/// A one-node Garage on loopback with one bucket and one key.
pub struct Garage {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    proc: Option<Proc>,
}

impl Garage {
    /// Starts Garage in `dir` (its metadata, data and config live there)
    /// with data blocks stored uncompressed, so a test can look for
    /// plaintext in them.
    pub fn start(dir: &Path) -> Garage {
        std::fs::create_dir_all(dir).unwrap();
        let rpc = free_port();
        let api = free_port();
        let config = dir.join("garage.toml");
        let secret: String = {
            let mut b = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut b))
                .unwrap();
            b.iter().map(|x| format!("{x:02x}")).collect()
        };
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\n\
                 data_dir = \"{data}\"\n\
                 db_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 compression_level = \"none\"\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 [s3_api]\n\
                 s3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{api}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                meta = dir.join("meta").display(),
                data = dir.join("data").display(),
            ),
        )
        .unwrap();
        let mut g = Garage {
            dir: dir.to_path_buf(),
            config,
            endpoint: format!("http://127.0.0.1:{api}"),
            region: "garage".into(),
            bucket: "coffer-test".into(),
            key_id: String::new(),
            secret: String::new(),
            proc: None,
        };
        g.start_process();
        // `node id` reads the node's key from disk and answers before the
        // node listens; `status` asks the running node over RPC, which the
        // layout commands need.
        let id = wait_for(60, "garage's node id", || g.cli(&["node", "id", "-q"]).ok());
        let id = id.trim().split('@').next().unwrap_or("").to_string();
        g.wait_rpc();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id])
            .unwrap();
        g.cli(&["layout", "apply", "--version", "1"]).unwrap();
        wait_for(60, "garage to create the bucket", || {
            g.cli(&["bucket", "create", "coffer-test"]).ok()
        });
        let out = g.cli(&["key", "create", "coffer-test-key"]).unwrap();
        let field = |name: &str| {
            out.lines()
                .find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix(name)
                        .map(|r| r.trim_start_matches(':').trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in garage's answer: {out}"))
        };
        g.key_id = field("Key ID");
        g.secret = field("Secret key");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "coffer-test",
            "--key",
            "coffer-test-key",
        ])
        .unwrap();
        g.wait_ready();
        g
    }

    fn start_process(&mut self) {
        let log = std::fs::File::create(self.dir.join("garage.log")).unwrap();
        let child = Command::new(garage_binary())
            .args(["-c"])
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("garage starts");
        self.proc = Some(Proc(child));
    }

    /// Waits (60 s at most) until the node answers `garage status` over
    /// its RPC port; fails with the node's log if it exits first.
    fn wait_rpc(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = match self.cli(&["status"]) {
                Ok(_) => return,
                Err(e) => e,
            };
            let exited = self
                .proc
                .as_mut()
                .and_then(|p| p.0.try_wait().ok().flatten());
            let log = || std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default();
            if let Some(status) = exited {
                panic!(
                    "garage exited ({status}) before its RPC answered: {last}\n{}",
                    log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "garage's RPC did not answer in 60 s: {last}\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the `garage` command line against this node.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(garage_binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "error"))
    }

    /// Waits until the S3 API answers on its port.
    pub fn wait_ready(&self) {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        wait_for(60, "garage's S3 port", || {
            TcpStream::connect(&addr).ok().map(|_| ())
        });
        wait_for(60, "garage's bucket", || {
            self.cli(&["bucket", "info", "coffer-test"]).ok()
        });
    }

    /// Kills the server at once (SIGKILL), as a crash or a power cut would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
            std::mem::forget(p);
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.start_process();
        self.wait_ready();
    }

    /// The folders holding what the server stores (for looking inside).
    pub fn storage_dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.join("data"), self.dir.join("meta")]
    }
}

/// OpenSSH's sshd on a loopback port serving SFTP, accepting one key made
/// here for the current user.
pub struct Sshd {
    pub port: u16,
    pub user: String,
    /// The client's private key (OpenSSH format).
    pub client_key: String,
    /// Another private key the server does not accept.
    pub stranger_key: String,
    /// `SHA256:…` of the server's host key.
    pub host_fingerprint: String,
    /// A folder for the tests' copies (absolute).
    pub root: PathBuf,
    _proc: Proc,
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coffer-test", "-f"])
        .arg(path))
    .unwrap();
}

impl Sshd {
    pub fn start(dir: &Path) -> Sshd {
        crate::require_tool("ssh-keygen");
        let sshd = Path::new("/usr/sbin/sshd");
        let sftp = Path::new("/usr/lib/openssh/sftp-server");
        assert!(
            sshd.exists() && sftp.exists(),
            "OpenSSH's server is not installed: run scripts/setup.sh (apt: openssh-server)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let host = dir.join("host_ed25519");
        let client = dir.join("client_ed25519");
        let stranger = dir.join("stranger_ed25519");
        keygen(&host);
        keygen(&client);
        keygen(&stranger);
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let user = run(Command::new("id").arg("-un"))
            .unwrap()
            .trim()
            .to_string();
        let is_root = run(Command::new("id").arg("-u")).unwrap().trim() == "0";
        if is_root && !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host}\n\
                 PidFile none\n\
                 AuthorizedKeysFile {auth}\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 LogLevel ERROR\n\
                 Subsystem sftp {sftp}\n",
                host = host.display(),
                auth = dir.join("authorized_keys").display(),
                sftp = sftp.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let proc = Proc(child);
        wait_for(30, "sshd's banner", || {
            let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).ok()?;
            line.starts_with("SSH-2.0").then_some(())
        });
        let fp = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(dir.join("host_ed25519.pub")))
        .unwrap();
        let host_fingerprint = fp
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_string();
        let root = dir.join("store");
        std::fs::create_dir_all(&root).unwrap();
        Sshd {
            port,
            user,
            client_key: std::fs::read_to_string(&client).unwrap(),
            stranger_key: std::fs::read_to_string(&stranger).unwrap(),
            host_fingerprint,
            root,
            _proc: proc,
        }
    }
}
