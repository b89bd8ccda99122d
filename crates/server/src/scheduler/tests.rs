use std::sync::Mutex;

use hone_core::{ModelMetadata, TensorData};

use super::*;

type Calls = Arc<Mutex<Vec<Vec<i64>>>>;

/// Echoes its single input and records the shape of every call.
struct Echo {
    meta: ModelMetadata,
    calls: Calls,
    delay: Duration,
}

impl Backend for Echo {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        std::thread::sleep(self.delay);
        let mut bytes = Vec::new();
        let mut shape = batch[0][0].shape.clone();
        shape[0] = batch.iter().map(|r| r[0].shape[0]).sum();
        self.calls.lock().unwrap().push(shape.clone());
        for r in batch {
            let TensorData::Raw(b) = &r[0].data else {
                unreachable!()
            };
            // A value the "model" cannot take, as a token id past the
            // vocabulary: the engine refuses the whole call.
            if b.get(..4) == Some(&13f32.to_le_bytes()[..]) {
                return Err(Error::invalid("13 is out of range"));
            }
            bytes.extend_from_slice(b);
        }
        Ok(vec![Tensor::new(
            batch[0][0].dtype,
            shape,
            TensorData::Raw(bytes.into()),
        )?])
    }
}

fn scheduler(policy: BatchPolicy, delay: Duration) -> (Arc<Scheduler>, Calls) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let echo = Echo {
        meta: ModelMetadata::default(),
        calls: calls.clone(),
        delay,
    };
    let s = Scheduler::start(
        "test",
        vec![Box::new(echo)],
        policy,
        Arc::new(ModelStats::default()),
        Arc::new(|| Err(Error::internal("no rebuild in tests"))),
    );
    (Arc::new(s), calls)
}

fn rows(v: f32, rows: usize, cols: usize) -> Vec<Tensor> {
    vec![Tensor::from_f32(vec![rows as i64, cols as i64], &vec![v; rows * cols]).unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesces_compatible_requests_and_never_mixes_shapes() {
    let policy = BatchPolicy {
        max_batch_size: 8,
        dynamic: true,
        max_delay: Duration::from_millis(50),
        max_queue: 64,
        ..Default::default()
    };
    let (s, calls) = scheduler(policy, Duration::from_millis(5));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            let cols = if i % 2 == 0 { 3 } else { 4 };
            tokio::spawn(async move {
                (
                    i,
                    cols,
                    s.infer(rows(i as f32, 1 + i % 2, cols), None).await,
                )
            })
        })
        .collect();
    for t in tasks {
        let (i, cols, out) = t.await.unwrap();
        let out = out.unwrap();
        assert_eq!(
            out.outputs[0],
            rows(i as f32, 1 + i % 2, cols)[0],
            "request {i} got another's rows"
        );
    }
    let calls = calls.lock().unwrap();
    assert!(calls.len() < 12, "nothing was batched: {calls:?}");
    assert!(
        calls.iter().all(|c| c[0] <= 8),
        "a batch exceeded max_batch_size: {calls:?}"
    );
    assert_eq!(calls.iter().map(|c| c[0]).sum::<i64>(), 18);
}

/// A batch whose engine call fails is run again request by request:
/// only the request at fault gets the error, its neighbours their rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_fails_alone_not_its_batch() {
    let policy = BatchPolicy {
        max_batch_size: 8,
        dynamic: true,
        max_delay: Duration::from_millis(100),
        max_queue: 64,
        ..Default::default()
    };
    let (s, calls) = scheduler(policy, Duration::from_millis(5));
    let tasks: Vec<_> = [1.0, 2.0, 13.0, 4.0]
        .into_iter()
        .map(|v| {
            let s = s.clone();
            tokio::spawn(async move { (v, s.infer(rows(v, 1, 2), None).await) })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            (13.0, r) => {
                assert_eq!(r.unwrap_err().kind, hone_core::ErrorKind::InvalidInput)
            }
            (v, r) => assert_eq!(r.unwrap().outputs[0], rows(v, 1, 2)[0]),
        }
    }
    let calls = calls.lock().unwrap();
    assert!(calls.iter().any(|c| c[0] > 1), "never batched: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_the_element_limit() {
    let policy = BatchPolicy {
        max_batch_size: 8,
        max_batch_elements: 12,
        dynamic: true,
        max_delay: Duration::from_millis(50),
        max_queue: 64,
        ..Default::default()
    };
    let (s, calls) = scheduler(policy, Duration::from_millis(5));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.infer(rows(i as f32, 1, 4), None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let calls = calls.lock().unwrap();
    // 3 rows of 4 elements fit 12; a fourth would not.
    assert!(calls.iter().all(|c| c[0] <= 3), "{calls:?}");
    assert!(calls.iter().any(|c| c[0] > 1), "never batched: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dynamic_batching_requests_run_one_by_one() {
    let policy = BatchPolicy {
        max_batch_size: 0,
        max_queue: 64,
        ..Default::default()
    };
    let (s, calls) = scheduler(policy, Duration::from_millis(2));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.infer(rows(i as f32, 2, 3), None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*calls.lock().unwrap(), vec![vec![2, 3]; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_rejected_at_once() {
    let policy = BatchPolicy {
        max_batch_size: 0,
        max_queue: 2,
        ..Default::default()
    };
    let (s, _) = scheduler(policy, Duration::from_millis(200));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                (s.infer(rows(i as f32, 1, 1), None).await, start.elapsed())
            })
        })
        .collect();
    let mut rejected = 0;
    for t in tasks {
        let (r, took) = t.await.unwrap();
        if let Err(e) = r {
            assert_eq!(e.kind, hone_core::ErrorKind::Unavailable);
            assert!(e.message.starts_with("queue full"), "{e}");
            assert!(
                took < Duration::from_millis(100),
                "rejection waited {took:?}"
            );
            rejected += 1;
        }
    }
    assert!(rejected >= 2, "only {rejected} rejected");
}
