//! The deployment files, proved without a Docker engine (issue 7; none runs here). They sit
//! around the whole submit → queue → fetch → count → NSQ → DB → poll path: docker-compose.yml
//! gives `app` (`serve`) and `worker` their environment, the Dockerfile their entry point,
//! image environment and health check.
//!
//! * Every variable the compose file sets for `app` and `worker` (and every `ENV` of the
//!   image) must be a setting of the clap config for that service's subcommand, and every
//!   value must parse — so a renamed setting cannot silently stop applying in production.
//! * The real binary runs as the image would run it — ENTRYPOINT + the service's command,
//!   with exactly the image's and the compose file's environment (nothing inherited), the
//!   compose host names mapped to local stand-ins — and the Dockerfile's HEALTHCHECK
//!   command line, read from the Dockerfile, must pass against `app`; a task submitted to
//!   `app` must be finished by `worker`; both must exit 0 on SIGTERM.
//!
//! tests/deploy-check.sh checks the rest (the image's build context, `docker-compose config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches};
use wordtally::config::Cli;
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::{Stack, eventually, unique};

/// Variables the compose file may set that are not clap settings, and who reads them.
const NOT_CLAP: &[(&str, &str)] = &[("RUST_LOG", "tracing_subscriber::EnvFilter in main.rs")];

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ------------------------------------------------------------------------ the Dockerfile

/// What the runtime (last) stage of the Dockerfile says about running the binary.
#[derive(Debug, Default)]
struct Image {
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    healthcheck_timeout: Option<Duration>,
}

/// The Dockerfile's instructions as Docker reads them: comment lines dropped, `\`+newline
/// joined.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    out
}

/// A JSON-form argument list (`["a", "b"]`), or the shell form run by `/bin/sh -c`.
fn command_form(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.starts_with('[') {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON form {text}: {e}"))
    } else {
        vec!["/bin/sh".into(), "-c".into(), text.into()]
    }
}

fn parse_image(dockerfile: &str) -> Image {
    let mut image = Image::default();
    for instr in instructions(dockerfile) {
        let (word, rest) = instr
            .split_once(char::is_whitespace)
            .unwrap_or((&instr, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "FROM" => image = Image::default(), // only the last stage runs
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV without `=` ({instr}): use ENV K=V"));
                    assert!(
                        !v.contains(['"', '\'']),
                        "quoted ENV values are not read by this test: {instr}"
                    );
                    image.env.insert(k.to_string(), v.to_string());
                }
            }
            "ENTRYPOINT" => image.entrypoint = command_form(rest),
            "CMD" => image.cmd = command_form(rest),
            "HEALTHCHECK" => {
                let (options, cmd) = rest
                    .split_once("CMD ")
                    .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {instr}"));
                image.healthcheck = command_form(cmd);
                image.healthcheck_timeout = options
                    .split_whitespace()
                    .find_map(|o| o.strip_prefix("--timeout="))
                    .map(|t| {
                        let secs = t.strip_suffix('s').and_then(|s| s.parse().ok());
                        Duration::from_secs(secs.unwrap_or_else(|| panic!("timeout {t}")))
                    });
            }
            _ => {}
        }
    }
    image
}

// ------------------------------------------------------------------------ the compose file

/// Resolves YAML merge keys (`<<: *anchor`, which the compose file uses): the merged
/// mapping's keys are added unless the mapping sets them itself.
fn merge_keys(y: Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let merge = Yaml::String("<<".into());
            let mut out = yaml_rust2::yaml::Hash::new();
            let mut merged = Vec::new();
            for (k, v) in h {
                let v = merge_keys(v);
                if k == merge {
                    match v {
                        Yaml::Array(items) => merged.extend(items),
                        other => merged.push(other),
                    }
                } else {
                    out.insert(k, v);
                }
            }
            for m in merged {
                let Yaml::Hash(m) = m else {
                    panic!("`<<` must merge a mapping, got {m:?}")
                };
                for (k, v) in m {
                    out.entry(k).or_insert(v);
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

fn parse_compose(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).expect("docker-compose.yml is valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    merge_keys(docs.remove(0))
}

fn scalar(y: &Yaml, what: &str) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("{what}: not a plain value: {other:?}"),
    }
}

/// One compose service as the test runs it.
#[derive(Debug)]
struct Service {
    name: String,
    /// The argument vector the container runs: ENTRYPOINT + (command or CMD).
    argv: Vec<String>,
    /// The compose file's `environment`, exactly.
    compose_env: BTreeMap<String, String>,
}

/// What an operator puts in the shell or `.env` beside the compose file, as this test's
/// deployment does: the first account's password (docker-compose reads it from there).
const OPERATOR_ENV: &[(&str, &str)] = &[("WORDTALLY_ADMIN_PASSWORD", "a test passphrase")];

/// Compose's `${NAME}` / `${NAME:-default}` interpolation, from `OPERATOR_ENV` only.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            panic!("unterminated ${{ in {value:?}")
        };
        let inner = &rest[i + 2..i + j];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        let v = OPERATOR_ENV
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .unwrap_or(default);
        out.push_str(v);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

fn service(compose: &Yaml, image: &Image, name: &str) -> Service {
    let s = &compose["services"][name];
    assert!(!s.is_badvalue(), "docker-compose.yml has no service {name}");
    let command = match &s["command"] {
        Yaml::BadValue => image.cmd.clone(),
        Yaml::Array(items) => items.iter().map(|i| scalar(i, "command")).collect(),
        Yaml::String(text) => text.split_whitespace().map(String::from).collect(),
        other => panic!("{name}: command {other:?}"),
    };
    assert!(
        s["entrypoint"].is_badvalue(),
        "{name} overrides the entrypoint; teach this test to read it"
    );
    let mut compose_env = BTreeMap::new();
    match &s["environment"] {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let k = scalar(k, "environment key");
                assert!(
                    !v.is_null(),
                    "{name}: {k} has no value (taken from the host), which this test cannot check"
                );
                compose_env.insert(k.clone(), interpolate(&scalar(v, &k)));
            }
        }
        Yaml::Array(items) => {
            for item in items {
                let item = scalar(item, "environment entry");
                let (k, v) = item
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}: environment entry {item} has no `=`"));
                compose_env.insert(k.into(), interpolate(v));
            }
        }
        Yaml::BadValue => {}
        other => panic!("{name}: environment {other:?}"),
    }
    Service {
        name: name.into(),
        argv: image.entrypoint.iter().cloned().chain(command).collect(),
        compose_env,
    }
}

/// The environment the container sees: the image's `ENV`, overridden by the compose file.
fn container_env(image: &Image, service: &Service) -> BTreeMap<String, String> {
    let mut env = image.env.clone();
    env.extend(service.compose_env.clone());
    env
}

// ------------------------------------------------------------------------ against clap

/// Environment variable names the clap config reads for `subcommand`.
fn clap_env_names(subcommand: &str) -> Vec<String> {
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(subcommand)
        .unwrap_or_else(|| panic!("wordtally has no subcommand {subcommand}"));
    sub.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// Parses `argv` as the binary would with `env` as its whole environment, through clap's
/// own value parsers: each variable becomes the default value of the argument that reads
/// it (clap handles env values and defaults alike: one raw value, the same parser, the
/// same delimiter), and the test process's own environment is ignored.
fn parse_with_env(argv: &[String], env: &BTreeMap<String, String>) -> Result<Cli, String> {
    fn apply(cmd: clap::Command, env: &BTreeMap<String, String>) -> clap::Command {
        let cmd = cmd.mut_args(|a| {
            let value = a
                .get_env()
                .and_then(|name| env.get(name.to_string_lossy().as_ref()));
            let a = a.env(None); // nothing from the test process
            match value {
                Some(v) => a.default_value(&*Box::leak(v.clone().into_boxed_str())),
                None => a,
            }
        });
        cmd.mut_subcommands(|s| apply(s, env))
    }
    let matches = apply(Cli::command(), env)
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// Every variable `service` sets is read by its subcommand (or listed in NOT_CLAP), every
/// image `ENV` by the image's own CMD, and the container's whole environment parses.
fn check_service(image: &Image, service: &Service) -> Result<Cli, String> {
    let subcommand = service
        .argv
        .get(1)
        .ok_or_else(|| format!("{}: no subcommand in {:?}", service.name, service.argv))?;
    let accepted = clap_env_names(subcommand);
    let image_sub = image.cmd.first().map(String::as_str).unwrap_or("serve");
    let image_accepted = clap_env_names(image_sub);
    let not_clap = |k: &str| NOT_CLAP.iter().any(|(n, _)| *n == k);
    let mut unknown = Vec::new();
    for k in service.compose_env.keys() {
        if !accepted.contains(k) && !not_clap(k) {
            unknown.push(format!(
                "{}: {k} is not a setting of `wordtally {subcommand}`",
                service.name
            ));
        }
    }
    for k in image.env.keys() {
        if !image_accepted.contains(k) && !not_clap(k) {
            unknown.push(format!(
                "Dockerfile ENV {k} is not a setting of `wordtally {image_sub}`"
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(unknown.join("\n"));
    }
    parse_with_env(&service.argv, &container_env(image, service))
        .map_err(|e| format!("{}: the environment does not parse: {e}", service.name))
}

fn deployment() -> (Image, Service, Service) {
    let image = parse_image(&repo_file("Dockerfile"));
    assert_eq!(image.entrypoint, ["wordtally"], "the image's ENTRYPOINT");
    let compose = parse_compose(&repo_file("docker-compose.yml"));
    let app = service(&compose, &image, "app");
    let worker = service(&compose, &image, "worker");
    (image, app, worker)
}

#[test]
fn compose_environment_is_made_of_real_settings_that_parse() {
    let (image, app, worker) = deployment();
    assert_eq!(app.argv, ["wordtally", "serve"]);
    assert_eq!(worker.argv, ["wordtally", "worker"]);
    let cli = check_service(&image, &app).unwrap_or_else(|e| panic!("{e}"));
    match cli.command {
        Some(wordtally::config::Command::Serve(a)) => {
            // Spot checks that the compose values reached the parsed settings.
            assert_eq!(a.worker.workers, 0, "app runs no local workers");
            assert_eq!(a.listen.to_string(), app.compose_env["LISTEN"]);
            assert_eq!(a.nsqlookupd_http_address, ["nsqlookupd:4161"]);
            assert_eq!(a.database_url, app.compose_env["DATABASE_URL"]);
        }
        other => panic!("app: {other:?}"),
    }
    match check_service(&image, &worker)
        .unwrap_or_else(|e| panic!("{e}"))
        .command
    {
        Some(wordtally::config::Command::Worker(w)) => {
            assert_eq!(w.workers.to_string(), worker.compose_env["WORKERS"]);
            assert_eq!(w.redis_url.as_deref(), Some("redis://redis:6379/0"));
            assert!(!w.allow_private_targets, "the SSRF guard stays on");
        }
        other => panic!("worker: {other:?}"),
    }
}

/// The check above bites: a renamed setting, a setting of the other subcommand, a value
/// that does not parse and a bad image ENV are each refused.
#[test]
fn compose_check_refuses_unknown_settings_and_bad_values() {
    let (image, app, worker) = deployment();
    let with = |s: &Service, k: &str, v: &str| {
        let mut compose_env = s.compose_env.clone();
        compose_env.insert(k.into(), v.into());
        Service {
            name: s.name.clone(),
            argv: s.argv.clone(),
            compose_env,
        }
    };
    let err = check_service(&image, &with(&worker, "WORKER", "4")).unwrap_err();
    assert!(err.contains("WORKER is not a setting"), "{err}");
    let err = check_service(&image, &with(&worker, "DATABASE_URL", "postgres://x")).unwrap_err();
    assert!(
        err.contains("DATABASE_URL is not a setting of `wordtally worker`"),
        "{err}"
    );
    let err = check_service(&image, &with(&app, "WORKERS", "many")).unwrap_err();
    assert!(
        err.contains("does not parse") && err.contains("many"),
        "{err}"
    );
    let err = check_service(&image, &with(&app, "MAX_REDIRECTS", "11")).unwrap_err();
    assert!(err.contains("does not parse"), "{err}");
    let err = check_service(&image, &with(&worker, "LISTEN", "nowhere")).unwrap_err();
    assert!(err.contains("LISTEN is not a setting"), "{err}");
    let mut bad_image = parse_image(&repo_file("Dockerfile"));
    bad_image
        .env
        .insert("LISTEN_ADDR".into(), "0.0.0.0:5000".into());
    let err = check_service(&bad_image, &app).unwrap_err();
    assert!(err.contains("Dockerfile ENV LISTEN_ADDR"), "{err}");
    bad_image.env.remove("LISTEN_ADDR");
    bad_image.env.insert("PAGE_SIZE".into(), "many".into()); // compose does not override it
    let err = check_service(&bad_image, &app).unwrap_err();
    assert!(err.contains("does not parse"), "{err}");
    // A flag (no value on the command line) parses from its environment value as clap's
    // env handling does: "true"/"false".
    let flag = Cli::command()
        .find_subcommand("worker")
        .and_then(|w| {
            w.get_arguments()
                .find(|a| a.get_id() == "allow_private_targets")
                .map(|a| matches!(a.get_action(), ArgAction::SetTrue))
        })
        .expect("worker has --allow-private-targets");
    assert!(flag, "--allow-private-targets is a flag");
    let cli = check_service(&image, &with(&worker, "ALLOW_PRIVATE_TARGETS", "true"))
        .unwrap_or_else(|e| panic!("{e}"));
    match cli.command {
        Some(wordtally::config::Command::Worker(w)) => assert!(w.allow_private_targets),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------ running it

/// Compose host names → the local services standing in for them.
struct StandIns {
    /// Whole `DATABASE_URL` of a fresh database (the compose one names the container's
    /// user, password and database, which this machine does not have).
    postgres_url: String,
    /// `host:port` replacing `NAME:PORT` of each compose service.
    host_ports: Vec<(String, String)>,
}

/// Maps one value of the compose environment onto the stand-ins; a value that names a
/// compose service without a stand-in is refused (it could not work here, and a new
/// service the app depends on must get a stand-in, not be skipped).
fn localize(key: &str, value: &str, services: &[String], s: &StandIns) -> String {
    if let Ok(url) = url::Url::parse(value)
        && matches!(url.scheme(), "postgres" | "postgresql")
    {
        assert_eq!(url.host_str(), Some("postgres"), "{key}={value}");
        return s.postgres_url.clone();
    }
    let mut out = value.to_string();
    for (from, to) in &s.host_ports {
        out = out.replace(from.as_str(), to);
    }
    // A service is named as `NAME:PORT` at the start, after `//`, `@` or `,`.
    for svc in services {
        let named = format!("{svc}:");
        let hit = out.match_indices(&named).any(|(i, _)| {
            let before_ok = i == 0 || matches!(out.as_bytes()[i - 1], b'/' | b'@' | b',');
            let port = out.as_bytes().get(i + named.len());
            before_ok && port.is_some_and(u8::is_ascii_digit)
        });
        {
            assert!(
                !hit,
                "{key}={value} names the compose service {svc}, which has no local stand-in in \
                 tests/it/deploy.rs"
            );
        }
    }
    out
}

/// A child process with exactly `env` as its environment (plus PATH), logs to a file.
struct Proc {
    name: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, argv: &[String], env: &BTreeMap<String, String>) -> Proc {
        assert_eq!(
            argv[0], "wordtally",
            "{name}: the entry point is the wordtally binary"
        );
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"))
            .args(&argv[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wordtally");
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); log:\n{}", self.name, self.log_text());
        }
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid}");
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("{} ignored SIGTERM; log:\n{}", self.name, self.log_text()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs the Dockerfile's HEALTHCHECK command as Docker would inside the `app` container:
/// with the container's environment, within its `--timeout`. True when it exits 0.
async fn healthcheck(image: &Image, env: &BTreeMap<String, String>) -> bool {
    let timeout = image.healthcheck_timeout.unwrap_or(Duration::from_secs(30));
    let run = tokio::process::Command::new(&image.healthcheck[0])
        .args(&image.healthcheck[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(timeout, run).await, Ok(Ok(s)) if s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_entrypoint_and_healthcheck_run_with_the_compose_environment() {
    let (image, app, worker) = deployment();
    assert!(
        !image.healthcheck.is_empty(),
        "the Dockerfile has a HEALTHCHECK"
    );
    let stack = Stack::new().await;
    let broker = stack.broker();
    let redis = url::Url::parse(&crate::helpers::redis_url()).expect("redis url");
    let redis_host_port = format!(
        "{}:{}",
        redis.host_str().unwrap_or("127.0.0.1"),
        redis.port().unwrap_or(6379)
    );
    let stand_ins = StandIns {
        postgres_url: stack.db.url.clone(),
        host_ports: vec![
            ("redis:6379".into(), redis_host_port),
            ("nsqd:4150".into(), broker.tcp_addr().to_string()),
            ("nsqlookupd:4161".into(), broker.http_addr().to_string()),
            ("nsqd:4151".into(), broker.http_addr().to_string()),
        ],
    };
    let compose = parse_compose(&repo_file("docker-compose.yml"));
    let services: Vec<String> = compose["services"]
        .as_hash()
        .expect("services")
        .keys()
        .map(|k| scalar(k, "service name"))
        .collect();
    let local_env = |s: &Service| {
        let mut env: BTreeMap<String, String> = container_env(&image, s)
            .into_iter()
            .map(|(k, v)| {
                let v = localize(&k, &v, &services, &stand_ins);
                (k, v)
            })
            .collect();
        // The one addition: Redis on this machine is shared, so a prefix of the test's own.
        assert!(
            !env.contains_key("REDIS_PREFIX"),
            "compose sets REDIS_PREFIX"
        );
        env.insert("REDIS_PREFIX".into(), stack.redis_prefix.clone());
        // When `serve` needs an account setting for non-loopback addresses (access
        // control), the compose file will carry it and this test passes it on as it is;
        // a file path in it would need a stand-in here, like the host names above.
        env
    };
    let mut app_env = local_env(&app);
    // LISTEN stays the compose value (0.0.0.0:5000) unless that port is taken here.
    let listen: std::net::SocketAddr = app_env["LISTEN"].parse().expect("LISTEN");
    if std::net::TcpListener::bind(listen).is_err() {
        let port = crate::helpers::free_tcp_port();
        eprintln!("[deploy] {listen} is taken here: app listens on port {port} instead");
        app_env.insert("LISTEN".into(), format!("{}:{port}", listen.ip()));
    }
    let port = app_env["LISTEN"]
        .rsplit(':')
        .next()
        .unwrap_or("5000")
        .to_string();
    let base = format!("http://127.0.0.1:{port}");
    let worker_env = local_env(&worker);

    assert!(
        !healthcheck(&image, &app_env).await,
        "the health check passes with nothing listening on port {port}"
    );
    let mut app_proc = Proc::spawn("compose-app", &app.argv, &app_env);
    let mut worker_proc = Proc::spawn("compose-worker", &worker.argv, &worker_env);
    eventually(
        "the Dockerfile's HEALTHCHECK passes against app",
        Duration::from_secs(30),
        || {
            app_proc.assert_running();
            let (image, env) = (&image, &app_env);
            async move { healthcheck(image, env).await.then_some(()) }
        },
    )
    .await;

    // app runs no workers (WORKERS=0): only the compose worker can finish this task. The
    // SSRF guard (on, as in the compose file) refuses the loopback page without a fetch.
    wordtally::fetch::install_crypto_provider();
    // `serve` made the first account from WORDTALLY_ADMIN_PASSWORD (the port is not
    // loopback, so it would not start without one); a token of that account drives the API.
    let db_url = app_env
        .iter()
        .find(|(k, _)| *k == "DATABASE_URL")
        .map(|(_, v)| v.clone())
        .expect("app has DATABASE_URL");
    let admin = interpolate("${WORDTALLY_ADMIN_USER:-admin}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wordtally"))
        .args(["token", "create", "deploy-check", "--user", &admin])
        .env("DATABASE_URL", &db_url)
        .output()
        .await
        .expect("run wordtally token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let body: serde_json::Value = client
        .post(format!("{base}/api/tasks"))
        .json(&serde_json::json!({ "addresses": ["http://127.0.0.1:9/"] }))
        .send()
        .await
        .expect("POST /api/tasks")
        .json()
        .await
        .expect("submit answer");
    let id = body["tasks"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{body}"));
    let task = eventually("worker finishes the task", Duration::from_secs(30), || {
        worker_proc.assert_running();
        app_proc.assert_running();
        let (client, url) = (client.clone(), format!("{base}/api/tasks/{id}"));
        async move {
            let t: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            (t["status"] == "FINISHED").then_some(t)
        }
    })
    .await;
    let error = task["result"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("blocked by SSRF guard"), "{task}");
    worker_proc.assert_running();

    let status = worker_proc.terminate().await;
    assert!(status.success(), "worker exit after SIGTERM: {status}");
    let status = app_proc.terminate().await;
    assert!(status.success(), "app exit after SIGTERM: {status}");
    assert!(
        !healthcheck(&image, &app_env).await,
        "the health check still passes after app stopped"
    );
    drop((app_proc, worker_proc));
    stack.cleanup().await;
}
