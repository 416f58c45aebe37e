//! Typed settings from flags and environment, validated while parsing so a bad value stops the
//! process at start with a message naming the setting.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::redact::RedactKeys;
use crate::vault::SecretKey;

#[derive(Debug, Parser)]
#[command(name = "logbook", version, about = "Audit logs, background tasks and webhooks in one server.")]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, the dashboard and (unless --no-workers) the job workers.
    Serve(ServeArgs),
    /// Run the job workers alone, for scale-out.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Replay the event log into fresh projection tables (stop the servers first).
    RebuildProjections,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LOGBOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Do not run job workers (nor the search indexer) in this process: an API-only node.
    #[arg(long, env = "LOGBOOK_NO_WORKERS", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_workers: bool,
    /// On a fresh database, fill the `default` project with a day of example data (logs, a failing
    /// webhook endpoint and its sendouts, an import), to try the console.
    #[arg(long, env = "LOGBOOK_DEMO", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print its keys.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long, default_value = "shared")]
        plan: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Database URL: `sqlite://path` or `postgres://…` [default: SQLite at $LOGBOOK_DATA_DIR/logbook.db]
    #[arg(long, env = "DATABASE_URL", global = true, value_parser = parse_database_url)]
    pub database_url: Option<String>,
    /// Folder for the embedded database and stored files.
    #[arg(long, env = "LOGBOOK_DATA_DIR", global = true, default_value = "./logbook-data")]
    pub data_dir: PathBuf,
    /// Admin token (`adm_…`); when unset one is generated on first start and printed once.
    #[arg(long, env = "LOGBOOK_ADMIN_TOKEN", global = true, hide_env_values = true, value_parser = parse_admin_token)]
    pub admin_token: Option<String>,
    /// Allow webhook URLs that resolve to loopback, private or link-local addresses.
    #[arg(long, env = "LOGBOOK_WEBHOOK_ALLOW_PRIVATE", global = true, default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Delays before each delivery attempt, comma-separated.
    #[arg(long, env = "LOGBOOK_WEBHOOK_RETRY_SCHEDULE", global = true, default_value = "0s,5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub webhook_retry_schedule: RetrySchedule,
    /// Timeout of one delivery attempt.
    #[arg(long, env = "LOGBOOK_WEBHOOK_TIMEOUT", global = true, default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// Disable an endpoint after it has failed every attempt for this long.
    #[arg(long, env = "LOGBOOK_WEBHOOK_DISABLE_AFTER", global = true, default_value = "5d", value_parser = parse_duration)]
    pub webhook_disable_after: Duration,
    /// Largest accepted import file, in bytes.
    #[arg(long, env = "LOGBOOK_MAX_IMPORT_BYTES", global = true, default_value_t = 100 * 1024 * 1024)]
    pub max_import_bytes: u64,
    /// Largest accepted JSON request body, in bytes.
    #[arg(long, env = "LOGBOOK_MAX_BODY_BYTES", global = true, default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// JSON keys whose values are stored as "[redacted]" in logs, comma-separated.
    #[arg(long, env = "LOGBOOK_REDACT_KEYS", global = true, default_value = RedactKeys::DEFAULT, value_parser = parse_redact_keys)]
    pub redact_keys: RedactKeys,
    /// Record a log entry for every /v1 request. Only benchmarks switch this off.
    #[arg(long, env = "LOGBOOK_REQUEST_LOGGING", global = true, default_value = "true", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub request_logging: bool,
    /// Maximum database connections in the pool.
    #[arg(long, env = "LOGBOOK_DB_POOL_SIZE", global = true, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
    /// How long a request waits for a database connection before it is answered 503 (the database
    /// is down or every connection is busy).
    #[arg(long, env = "LOGBOOK_DB_ACQUIRE_TIMEOUT", global = true, default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
    /// Longest a PostgreSQL statement may run before the database cancels it; 0s: no limit.
    #[arg(long, env = "LOGBOOK_DB_STATEMENT_TIMEOUT", global = true, default_value = "60s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
    /// Webhook deliveries one worker process makes at once.
    #[arg(long, env = "LOGBOOK_DELIVERY_CONCURRENCY", global = true, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub delivery_concurrency: u32,
    /// Tasks of each type (imports, exports, purges…) one worker process runs at once.
    #[arg(long, env = "LOGBOOK_TASK_CONCURRENCY", global = true, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub task_concurrency: u32,
    /// On SIGTERM, how long requests and deliveries in flight may take to finish before the
    /// process exits anyway (running tasks are handed back at once, whatever this says).
    #[arg(long, env = "LOGBOOK_SHUTDOWN_GRACE", global = true, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a job may go without its worker's heartbeat before another worker takes it over
    /// (after a crash). At least 3s.
    #[arg(long, env = "LOGBOOK_JOB_LEASE", global = true, default_value = "60s", value_parser = parse_lease)]
    pub job_lease: Duration,
    /// When the daily retention purge runs, as a cron expression in UTC (seconds first).
    #[arg(long, env = "LOGBOOK_RETENTION_SCHEDULE", global = true, default_value = "0 30 3 * * *", value_parser = parse_cron)]
    pub retention_schedule: String,
    /// Key that seals webhook signing secrets at rest: 32 bytes in base64 (`openssl rand -base64 32`).
    /// Every node of a cluster needs the same one. Unset: a key file in the data folder, made on
    /// first start.
    #[arg(long, env = "LOGBOOK_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<SecretKey>,
    /// Keys rotated out, comma-separated: secrets sealed with them are opened and re-sealed with
    /// the current key at start-up. Remove them once every node has started with the new key.
    #[arg(long, env = "LOGBOOK_PREVIOUS_SECRET_KEYS", global = true, hide_env_values = true, value_delimiter = ',')]
    pub previous_secret_keys: Vec<SecretKey>,
    /// Requests each credential (key or user) may make per `LOGBOOK_RATE_LIMIT_WINDOW`; more are
    /// answered 429 with `Retry-After`. Nodes on one PostgreSQL share their counts. 0: no limit.
    #[arg(long, env = "LOGBOOK_RATE_LIMIT", global = true, default_value_t = 10_000)]
    pub rate_limit: u32,
    #[arg(long, env = "LOGBOOK_RATE_LIMIT_WINDOW", global = true, default_value = "1s", value_parser = parse_duration)]
    pub rate_limit_window: Duration,
    /// Log output format: `text` or `json`.
    #[arg(long, env = "LOGBOOK_LOG_FORMAT", global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Settings {
    /// Settings with every default, for tests and tools that build an app in-process.
    pub fn defaults() -> Self {
        Cli::parse_from(["logbook", "migrate"]).settings
    }
}

/// Delays before each attempt of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| format!("'{value}' is not a duration such as 15s, 5m or 2h: {e}"))
}

fn parse_schedule(value: &str) -> Result<RetrySchedule, String> {
    let delays = value.split(',').map(parse_duration).collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > 50 {
        return Err("needs 1 to 50 delays, e.g. 0s,5s,5m".into());
    }
    Ok(RetrySchedule(delays))
}

fn parse_lease(value: &str) -> Result<Duration, String> {
    let lease = parse_duration(value)?;
    if lease < Duration::from_secs(3) { Err("must be at least 3s".into()) } else { Ok(lease) }
}

fn parse_cron(value: &str) -> Result<String, String> {
    value
        .parse::<cron::Schedule>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("'{value}' is not a cron expression such as `0 30 3 * * *` (sec min hour day month weekday): {e}"))
}

fn parse_database_url(value: &str) -> Result<String, String> {
    let ok = ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| value.starts_with(p));
    if ok { Ok(value.to_owned()) } else { Err("must start with sqlite:, postgres:// or postgresql://".into()) }
}

fn parse_admin_token(value: &str) -> Result<String, String> {
    if value.starts_with("adm_") && value.len() >= 24 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value.to_owned())
    } else {
        Err("must start with adm_ and hold at least 20 more printable characters".into())
    }
}

fn parse_redact_keys(value: &str) -> Result<RedactKeys, String> {
    Ok(RedactKeys::new(value.split(',')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retry_schedule_makes_eight_attempts_over_about_27_hours() {
        let s = Settings::defaults().webhook_retry_schedule;
        assert_eq!(s.0.len(), 8);
        let total: Duration = s.0.iter().sum();
        assert!((26 * 3600..28 * 3600).contains(&total.as_secs()), "{total:?}");
    }

    #[test]
    fn no_workers_is_a_switch_that_also_takes_a_value() {
        let no_workers = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
            Ok(Command::Serve(serve)) => Ok(serve.no_workers),
            Ok(_) => panic!("not serve"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(no_workers(&["logbook", "serve"]), Ok(false));
        assert_eq!(no_workers(&["logbook", "serve", "--no-workers", "--listen", "127.0.0.1:1"]), Ok(true));
        assert_eq!(no_workers(&["logbook", "serve", "--no-workers", "false"]), Ok(false));
        assert!(no_workers(&["logbook", "serve", "--no-workers", "often"]).unwrap_err().contains("--no-workers"));
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        for args in [
            vec!["logbook", "--database-url", "mysql://x", "migrate"],
            vec!["logbook", "--webhook-timeout", "soon", "migrate"],
            vec!["logbook", "--admin-token", "short", "migrate"],
            vec!["logbook", "--webhook-retry-schedule", "1s,,2s", "migrate"],
        ] {
            let err = Cli::try_parse_from(&args).unwrap_err().to_string();
            assert!(err.contains(args[1]), "{err}");
        }
    }
}
