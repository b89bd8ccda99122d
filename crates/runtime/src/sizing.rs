//! The sizing rule: how many sessions (instances) a model file of a given
//! size gets and how the cores are shared out between them, when nothing
//! says otherwise. `hone serve` applies it and `hone optimize` times
//! candidates with it, so the speed one reports is the speed the other
//! delivers.

use crate::SessionConfig;

/// Batch size used when a model has a dynamic first dimension and no config
/// says otherwise: the server batches up to it, and the optimizer judges
/// candidates in the batches that gives.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 64;

/// Cores ONNX Runtime may use on this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Instances when the config names none. Two sessions with half the cores
/// each where there are two cores to share and the model is mid-sized; one
/// otherwise. Independent sessions keep a server's throughput when other
/// threads (the network, the client) take CPU: one session's intra-op threads
/// wait for their slowest member at every operator, so one preempted thread
/// stalls the whole call (resnet18 here: 84 % of in-process throughput with
/// one session, 92 % with two). Below 1 MiB a call takes microseconds and the
/// batcher's coalescing does better with one engine thread (mlp100: about
/// 15 % more requests/s); from 1 GiB a second copy of the weights costs too
/// much memory.
pub fn default_instances(model_bytes: u64) -> u32 {
    if cores() >= 2 && (1 << 20..1 << 30).contains(&model_bytes) {
        2
    } else {
        1
    }
}

/// Intra-op threads per instance when none are configured: the cores shared
/// out between the instances, so N sessions never start N × cores threads.
pub fn threads_per_instance(instances: u32) -> usize {
    (cores() / instances.max(1) as usize).max(1)
}

/// The session a model file of this size gets by default: the default
/// instance count, and the cores shared out between the instances.
pub fn default_session_config(model_bytes: u64) -> SessionConfig {
    SessionConfig {
        intra_op_threads: threads_per_instance(default_instances(model_bytes)),
        ..SessionConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_not_given_are_shared_between_instances() {
        let many = cores() >= 2;
        assert_eq!(default_instances(40 << 10), 1, "small models: one engine");
        assert_eq!(default_instances(45 << 20), if many { 2 } else { 1 });
        assert_eq!(default_instances(2 << 30), 1, "huge models keep one copy");
        let mid = default_session_config(45 << 20);
        assert_eq!(
            mid.intra_op_threads,
            (cores() / default_instances(45 << 20) as usize).max(1)
        );
        assert_eq!(default_session_config(40 << 10).intra_op_threads, cores());
    }
}
