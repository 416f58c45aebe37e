//! The one place that turns committed events into queued jobs: a scheduled task gets its job, a
//! new sendout its first attempt, a retry request its manual attempt, and a failed attempt with a
//! retry left its next attempt at the time the schedule says. Services only append events; the
//! event store hands each commit here (see `event_log::AfterCommit`), and the sweepers queue again
//! whatever a crash between commit and queueing lost.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::JobQueue;
use crate::domain::job::DeliveryJob;
use crate::event_log::{AfterCommit, AttemptOutcome, DomainEvent, StoredEvent};

/// A commit asking for more retries than this (a bulk retry's step, 500 at a time) queues them in
/// the shared queue, where every worker process takes a share, instead of handing them all to the
/// process that committed it.
const SPREAD_RETRIES_OVER: usize = 100;

pub struct Dispatcher {
    jobs: JobQueue,
}

impl Dispatcher {
    pub fn new(jobs: JobQueue) -> Self {
        Self { jobs }
    }

    async fn dispatch(&self, events: Vec<StoredEvent>) {
        let mut now = Vec::new();
        let mut retries = Vec::new();
        let mut later: BTreeMap<i64, Vec<DeliveryJob>> = BTreeMap::new();
        for stored in events {
            match stored.event {
                DomainEvent::TaskScheduled(task) => self.jobs.enqueue(task.task_type, &task.id).await,
                DomainEvent::SendoutCreated(s) => now.push(DeliveryJob { sendout_id: s.id, generation: 1, manual: false }),
                DomainEvent::SendoutRetryRequested(r) => retries.push(DeliveryJob { sendout_id: r.id, generation: r.generation, manual: true }),
                DomainEvent::SendoutAttempted(a) => {
                    if let AttemptOutcome::Retrying { next_attempt_at_ms } = a.outcome {
                        let next = DeliveryJob { sendout_id: a.id, generation: a.generation + 1, manual: false };
                        later.entry(next_attempt_at_ms).or_default().push(next);
                    }
                }
                _ => {}
            }
        }
        if retries.len() > SPREAD_RETRIES_OVER {
            self.jobs.enqueue_delivery_jobs(retries, None).await;
        } else {
            now.extend(retries);
        }
        self.jobs.hand_over(now).await;
        for (at, jobs) in later {
            self.jobs.enqueue_delivery_jobs(jobs, Some(at)).await;
        }
    }
}

impl AfterCommit for Dispatcher {
    fn wants(&self, event: &DomainEvent) -> bool {
        match event {
            DomainEvent::TaskScheduled(_) | DomainEvent::SendoutCreated(_) | DomainEvent::SendoutRetryRequested(_) => true,
            DomainEvent::SendoutAttempted(a) => matches!(a.outcome, AttemptOutcome::Retrying { .. }),
            _ => false,
        }
    }

    fn committed(&self, events: Vec<StoredEvent>) -> BoxFuture<'_, ()> {
        Box::pin(self.dispatch(events))
    }
}
