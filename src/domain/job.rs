//! What a queued job carries: ids only. A worker loads the current state and calls the same
//! services a handler calls, so a job queued twice or run late does no harm.

use serde::{Deserialize, Serialize};

/// A task's job: which task to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskJob {
    pub task_id: String,
}

/// One attempt of a sendout. `generation` names the attempt it was queued for; a job whose sendout
/// has moved on (retried by hand meanwhile) does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub sendout_id: String,
    pub generation: i32,
    pub manual: bool,
}
