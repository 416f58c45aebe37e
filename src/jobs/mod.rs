//! Background work that runs in `serve` (unless `--no-workers`) and in `logbook worker`: apalis
//! workers (one queue per task type, SQL storage in the application's own database), the daily
//! retention schedule, the search indexer, and a sweeper that re-queues any scheduled task whose job
//! was lost (the process died between committing the task and queueing its job).
//!
//! Jobs carry a task id only; the task projection holds everything else, and the task's fenced
//! steps (see `services::tasks`) make a job that runs twice harmless.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, Monitor, TaskBuilder, WorkerBuilder};
use apalis_cron::{CronScheduler, Tick};
use prometheus_client::metrics::counter::Counter;
use sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::domain::task::{TaskStatus, TaskType};
use crate::domain::time::now_ms;
use crate::events::EventStore;
use crate::metrics::Metrics;
use crate::projections::search::SearchIndexer;
use crate::services::tasks::{StepError, TaskRun};
use crate::services::{imports, retention};

/// Events the search indexer takes per transaction: small enough that on SQLite, where it shares the
/// one write lock with request logging, it never holds writers back for long.
const SEARCH_BATCH: u64 = 1000;
/// The task types that have a worker so far.
const QUEUES: &[TaskType] = &[TaskType::Import, TaskType::RetentionPurge];
/// How often an idle worker looks for jobs.
const POLL: Duration = Duration::from_millis(200);
/// A scheduled task without a running job for this long is queued again.
const SWEEP_AFTER_MS: i64 = 10_000;

/// A job: which task to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskJob {
    pub task_id: String,
}

/// Queues jobs into apalis' tables in the application's database.
#[derive(Clone)]
pub enum JobQueue {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

fn queue_name(task_type: TaskType) -> String {
    format!("logbook.{}", task_type.as_str())
}

impl JobQueue {
    pub fn new(db: &DatabaseConnection) -> Self {
        match db.get_database_backend() {
            DbBackend::Postgres => Self::Postgres(db.get_postgres_connection_pool().clone()),
            _ => Self::Sqlite(db.get_sqlite_connection_pool().clone()),
        }
    }

    /// Creates or updates apalis' tables. (Not `SqliteStorage::setup`, which would also switch the
    /// shared connection to `synchronous = OFF`.)
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => apalis_sqlite::SqliteStorage::migrations().run(pool).await?,
            Self::Postgres(pool) => apalis_postgres::PostgresStorage::migrations().run(pool).await?,
        }
        Ok(())
    }

    /// Queues the task's job. The job's idempotency key is the task id, so queueing twice (the
    /// sweeper after a crash) makes one job. A failure is only logged: the sweeper queues it later.
    pub async fn enqueue(&self, task_type: TaskType, task_id: &str) {
        if let Err(err) = self.push(task_type, task_id).await {
            tracing::warn!(task_id, error = %err, "queueing a job failed; the sweeper will retry");
        }
    }

    async fn push(&self, task_type: TaskType, task_id: &str) -> Result<(), BoxDynError> {
        let args = serde_json::to_vec(&TaskJob { task_id: task_id.to_owned() })?;
        let task = TaskBuilder::new(args).idempotency_key(task_id).max_attempts(10).build();
        let queue = queue_name(task_type);
        match self {
            Self::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                apalis_sqlite::queries::push_tasks(&mut *conn, &queue, &[task]).await?;
            }
            Self::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                apalis_postgres::queries::push_tasks(&mut *conn, &queue, vec![task]).await?;
            }
        }
        Ok(())
    }
}

/// What a job handler can reach.
#[derive(Clone)]
struct JobContext {
    store: EventStore,
    queue: JobQueue,
}

/// Background tasks of this process; dropping it stops them. A job cut off mid-step loses only
/// its uncommitted step, which the next worker does again.
pub struct Workers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

pub fn start(store: EventStore, queue: JobQueue, metrics: Arc<Metrics>, settings: &Settings) -> anyhow::Result<Workers> {
    let indexed = Counter::default();
    metrics.register("search_indexed_events", "Events consumed by the log search indexer", indexed.clone());
    let schedule: cron::Schedule = settings.retention_schedule.parse()?;
    let ctx = JobContext { store: store.clone(), queue: queue.clone() };
    let monitor = monitor(ctx.clone(), settings.job_lease, schedule);
    let run_monitor = async move {
        if let Err(err) = monitor.run().await {
            tracing::error!(error = %err, "job workers stopped");
        }
    };
    Ok(Workers {
        tasks: vec![
            tokio::spawn(run_search_indexer(store, indexed)),
            tokio::spawn(run_monitor),
            tokio::spawn(run_sweeper(ctx)),
        ],
    })
}

/// One apalis worker per queue on this process, plus the daily retention schedule.
fn monitor(ctx: JobContext, lease: Duration, schedule: cron::Schedule) -> Monitor {
    // Worker names are unique per process, so a restarted node never inherits a dead one's jobs by
    // name: they come back when the dead worker's heartbeat is older than the lease.
    let node = crate::domain::ids::new_id(crate::domain::ids::IdKind::Task).replacen("task_", "", 1);
    let heartbeat = lease / 3;
    let mut monitor = Monitor::new();
    for &task_type in QUEUES {
        let name = format!("{}@{node}", queue_name(task_type));
        let ctx = ctx.clone();
        monitor = match &ctx.queue {
            JobQueue::Sqlite(pool) => {
                let config = apalis_sqlite::Config::default()
                    .queue(queue_name(task_type))
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(3)
                    .batch_size(1);
                let backend = apalis_sqlite::SqliteStorage::<TaskJob>::new(pool).with_config(config);
                monitor.register(move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(apalis::prelude::BackendExt::poll_with_interval(backend.clone(), POLL))
                        .data(ctx.clone())
                        .build(run_task)
                })
            }
            JobQueue::Postgres(pool) => {
                let config = apalis_postgres::Config::default()
                    .queue(queue_name(task_type))
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(3)
                    .batch_size(1);
                let backend = apalis_postgres::PostgresStorage::<TaskJob>::new(pool).with_config(config);
                monitor.register(move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(apalis::prelude::BackendExt::poll_with_interval(backend.clone(), POLL))
                        .data(ctx.clone())
                        .build(run_task)
                })
            }
        };
    }
    let cron_name = format!("logbook.retention_daily@{node}");
    monitor.register(move |_| {
        WorkerBuilder::new(cron_name.clone()).backend(CronScheduler::new(schedule.clone())).data(ctx.clone()).build(daily_retention)
    })
}

async fn run_task(job: TaskJob, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let Some(run) = TaskRun::start(&ctx.store, &job.task_id).await? else { return Ok(()) };
    let outcome = match TaskType::parse(&run.task.task_type) {
        Ok(TaskType::Import) => imports::run(&ctx.store, run).await,
        Ok(TaskType::RetentionPurge) => retention::run(&ctx.store, run).await,
        _ => {
            let mut run = run;
            run.fail(Vec::new(), "this task type has no worker yet".into()).await
        }
    };
    match outcome {
        // Cancelled or taken over: nothing left for this job.
        Ok(()) | Err(StepError::Lost) => Ok(()),
        Err(StepError::Store(err)) => {
            tracing::warn!(task_id = job.task_id, error = %err, "task step failed; the job will be retried");
            Err(err.into())
        }
    }
}

async fn daily_retention(tick: Tick, ctx: Data<JobContext>) -> Result<(), BoxDynError> {
    let day = chrono::DateTime::from_timestamp(tick.get_timestamp() as i64, 0).unwrap_or_default().format("%Y-%m-%d").to_string();
    let scheduled = retention::daily(&ctx.store, &ctx.queue, day.clone()).await?;
    tracing::info!(day, projects = scheduled, "daily retention purge scheduled");
    Ok(())
}

/// Re-queues scheduled tasks whose job went missing, and clears abandoned uploads.
async fn run_sweeper(ctx: JobContext) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stale: Result<Vec<(String, String)>, _> = entity::task::Entity::find()
            .select_only()
            .columns([entity::task::Column::Id, entity::task::Column::TaskType])
            .filter(entity::task::Column::Status.eq(TaskStatus::Scheduled.as_str()))
            .filter(entity::task::Column::CreatedAtMs.lt(now_ms() - SWEEP_AFTER_MS))
            .limit(100)
            .into_tuple()
            .all(ctx.store.db())
            .await;
        for (id, task_type) in stale.unwrap_or_default() {
            if let Ok(task_type) = TaskType::parse(&task_type) {
                ctx.queue.enqueue(task_type, &id).await;
            }
        }
        if let Err(err) = retention::remove_abandoned_uploads(&ctx.store).await {
            tracing::warn!(error = %err, "removing abandoned uploads failed");
        }
    }
}

async fn run_search_indexer(store: EventStore, indexed: Counter) {
    let mut indexer = SearchIndexer::default();
    loop {
        match indexer.step(&store, SEARCH_BATCH).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(n) => {
                indexed.inc_by(n as u64);
            }
            Err(err) => {
                tracing::warn!(error = %err, "search indexing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
