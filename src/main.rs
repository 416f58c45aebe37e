use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use logbook::config::{Cli, Command, ProjectCommand, Settings};
use logbook::domain::project::{Plan, ProjectName};
use logbook::domain::time::ProjectTimeZone;
use logbook::event_log::EventMetadata;
use logbook::services::projects::{self, FirstStart, NewProject};
use logbook::startup::{Application, open_database, shutdown_signal};
use logbook::{api, jobs, projections, telemetry};

/// glibc's allocator was a tenth of the server's CPU in an ingest profile (a request's JSON is many
/// small allocations freed together, which it consolidates again and again).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(settings, &args.listen, !args.no_workers).await?;
            let base = format!("http://{}", display_addr(&args.listen, app.port()));
            if let Some(first) = &app.first_start {
                print_first_start(first, &base);
            }
            if args.demo {
                match &app.first_start {
                    Some(first) => {
                        let (base, key) = (base.clone(), first.project.server_key.token.clone());
                        tokio::spawn(async move {
                            match logbook::demo::seed(&base, &key).await {
                                Ok(()) => println!("Demo data is in the default project: sign in at {base}/ with the dashboard token."),
                                Err(e) => tracing::error!(error = %format!("{e:#}"), "the demo data could not be written"),
                            }
                        });
                    }
                    None => tracing::warn!("--demo seeds only a fresh database; this one has data already"),
                }
            }
            tracing::info!(address = %base, "listening; dashboard at {base}/, API docs at {base}/docs/");
            if args.no_workers {
                tracing::info!("job workers not started (--no-workers)");
            }
            app.run_until_stopped().await
        }
        Command::Worker => {
            let (store, queue) = open_database(&settings).await?;
            logbook::startup::hear_other_nodes(&store);
            let metrics = std::sync::Arc::new(logbook::metrics::Metrics::default());
            let workers = jobs::start(store, queue, metrics, &settings)?;
            tracing::info!("workers started: imports, retention purges, daily retention schedule, log search indexer");
            shutdown_signal().await;
            tracing::info!("shutting down gracefully");
            workers.shutdown(settings.shutdown_grace).await;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate => {
            open_database(&settings).await?;
            println!("Migrations applied.");
            Ok(())
        }
        Command::RebuildProjections => rebuild(&settings).await,
        Command::Openapi => {
            println!("{}", api::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Project(ProjectCommand::Create { name, time_zone, plan }) => {
            let name = ProjectName::try_from(name).map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let time_zone = ProjectTimeZone::try_from(time_zone).map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
            let plan = Plan::parse(&plan).ok_or_else(|| anyhow::anyhow!("--plan must be shared or dedicated"))?;
            let (store, _) = open_database(&settings).await?;
            let new = NewProject { name, time_zone, plan, retention_days: None };
            let created = projects::create(&store, &EventMetadata::system(), new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("Project {} ({})", created.project.name, created.project.id);
            println!("  server key: {}", created.server_key.token);
            println!("  client key: {}", created.client_key.token);
            println!("These keys are shown only now.");
            Ok(())
        }
    }
}

fn display_addr(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{}:{port}", if host == "0.0.0.0" { "localhost" } else { host }),
        None => listen.to_owned(),
    }
}

fn print_first_start(first: &FirstStart, base: &str) {
    println!("Logbook is set up. These credentials are shown only now; store them safely.");
    match &first.admin_token {
        Some(token) => println!("  admin token:         {token}"),
        None => println!("  admin token:         (from LOGBOOK_ADMIN_TOKEN)"),
    }
    println!("  project:             {} ({})", first.project.project.name, first.project.project.id);
    println!("  server key:          {}", first.project.server_key.token);
    println!("  client key:          {}", first.project.client_key.token);
    println!("  dashboard user:      {} <{}>", first.user.user.name, first.user.user.email);
    println!("  dashboard token:     {}", first.user.token);
    println!("  dashboard:           {base}/");
    println!("  API docs:            {base}/docs/");
}

async fn rebuild(settings: &Settings) -> anyhow::Result<()> {
    let (store, _) = open_database(settings).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let replayed = projections::rebuild(&store, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish();
    println!("Rebuilt every projection from {replayed} events.");
    Ok(())
}
