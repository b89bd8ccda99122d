//! The inference core every protocol shares (text-embeddings-inference's
//! `Infer`): a request's [`Head`] and body become a [`Call`], the call an
//! [`Answer`], the answer a reply. Here, once, for every protocol: model
//! routing (version, label, traffic split), the byte budget, decode
//! failures counted, output names checked, payload samples, shadow copies,
//! statistics, CPU work moved off the async threads, `Server-Timing` and
//! the per-request observation (access log, spans, request id). A protocol
//! front end implements [`Wire`]: wire format in, wire format out.

mod call;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hone_core::{Error, NamedTensor, Tensor};

use crate::error::ServeError;
use crate::metrics::FailReason;
use crate::model::LoadedModel;
use crate::observe::{Outcome, server_timing};
use crate::scheduler::{StepTime, Timing};
use crate::state::ServerState;

/// The request header (HTTP, gRPC metadata) that marks a request as
/// synthetic, with the value `synthetic`: it is answered as any other but
/// is not live traffic, so drift does not sample it.
pub const SYNTHETIC_HEADER: &str = "hone-traffic";

pub(crate) use call::{Answer, Call, Head, Read, Route};
pub(crate) use wire::{Transport, Wire};

/// What the observation learns of a request on its way.
#[derive(Default)]
struct Facts {
    model: Option<Arc<LoadedModel>>,
    bytes_in: usize,
    timing: Option<Timing>,
    /// An ensemble's steps and their times.
    steps: Vec<StepTime>,
    /// The payload log sampled this request.
    keep: bool,
    inputs: Option<Vec<NamedTensor>>,
    outputs: Option<Vec<(String, Tensor)>>,
    /// How long the request waited for its model to load (a cold start
    /// under the memory budget).
    loaded_for: Option<Duration>,
    /// The observation's request id (a client's `x-request-id`, or one
    /// made up), when observing.
    request_id: Option<String>,
    /// The id the answer was kept under for feedback, when the request
    /// brought no id of its own: it goes back as `x-request-id`.
    kept_as: Option<String>,
}

/// The core: everything a request needs beyond its wire format.
#[derive(Clone)]
pub(crate) struct Infer {
    pub(crate) state: Arc<ServerState>,
}

impl Infer {
    pub(crate) fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }

    /// Serves one inference request of protocol `W` from arrival to reply.
    pub(crate) async fn serve<W: Wire>(
        &self,
        mut head: Head,
        body: <W::Transport as Transport>::Body,
    ) -> <W::Transport as Transport>::Reply {
        let s = &self.state;
        let obs = s.observer.begin(
            W::PROTOCOL,
            head.header("traceparent"),
            head.header("x-request-id"),
        );
        let mut f = Facts {
            keep: obs.is_some() && s.observer.sample_payload(),
            request_id: obs.as_ref().map(|o| o.request_id.clone()),
            ..Facts::default()
        };
        let result = match head.refused.take() {
            Some(e) => {
                W::Transport::discard(&self.state, &head, body);
                Err(e)
            }
            None => self.run::<W>(&head, body, &mut f).await,
        };
        let (mut reply, error) = match result {
            Ok(r) => (r, None),
            Err(e) => {
                let msg = e.to_string();
                (W::Transport::refuse(e), Some(msg))
            }
        };
        let mut extra = HeaderMap::new();
        let mut put = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::try_from(v) {
                extra.insert(HeaderName::from_static(name), v);
            }
        };
        if let Some(t) = f.timing.as_ref().filter(|_| error.is_none()) {
            let mut v = server_timing(t, &f.steps);
            if let Some(l) = f.loaded_for {
                v.push_str(&format!(", load;dur={:.3}", l.as_secs_f64() * 1e3));
            }
            put("server-timing", v);
        }
        let Some(mut obs) = obs else {
            if let Some(id) = f.kept_as.take() {
                put("x-request-id", id);
            }
            W::Transport::annotate(&mut reply, extra);
            return reply;
        };
        put("x-request-id", obs.request_id.clone());
        if let Some(t) = obs.trace.filter(|_| s.observer.tracing()) {
            put("traceparent", t.header());
        }
        W::Transport::annotate(&mut reply, extra);
        obs.keep = f.inputs.take();
        let outcome = Outcome {
            model: match &f.model {
                Some(m) => Some((m.name.as_str(), m.version.as_str())),
                None => Some((head.route.model.as_str(), "")),
            },
            status: W::Transport::status(&reply),
            error: error.as_deref(),
            bytes_in: f.bytes_in,
            bytes_out: W::Transport::bytes_out(&reply),
            timing: f.timing,
            steps: &f.steps,
        };
        s.observer.finish(obs, &outcome, f.outputs.take());
        reply
    }

    async fn run<W: Wire>(
        &self,
        head: &Head,
        body: <W::Transport as Transport>::Body,
        f: &mut Facts,
    ) -> Result<<W::Transport as Transport>::Reply, ServeError> {
        let m = match self.route(head).await {
            Ok((m, loaded_for)) => {
                f.loaded_for = loaded_for;
                m
            }
            Err(e) => {
                W::Transport::discard(&self.state, head, body);
                return Err(e);
            }
        };
        f.model = Some(m.clone());
        let Read { raw, mut ticket } = W::Transport::read(&self.state, head, body).await?;
        f.bytes_in = W::Transport::raw_len(&raw);
        let received = Instant::now();
        let decoded = {
            let m = m.clone();
            let big = W::decode_off_thread(&raw);
            self.cpu(big, "request decoder", move || W::decode(raw, &m))
                .await?
        };
        let (call, keep) = match decoded.and_then(|(call, keep)| {
            check_outputs(&m, &call.outputs)?;
            Ok((call, keep))
        }) {
            Ok(d) => d,
            Err(e) => {
                m.stats.fail(FailReason::Invalid, Duration::ZERO);
                return Err(e);
            }
        };
        if let Some(t) = ticket.as_mut() {
            t.grow(call.fresh_bytes)?;
        }
        if f.keep {
            f.inputs = Some(call.inputs.clone());
        }
        let s = &self.state;
        // Checks (ship's smoke test, a probe) say so, and stay out of drift
        // and of shadow comparisons.
        let live = !head
            .headers
            .get(SYNTHETIC_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"synthetic"));
        let shadow = crate::traffic::shadow_for(&s.traffic, &m)
            .filter(|_| live)
            .map(|t| (t, call.inputs.clone()));
        let call_id = call.id;
        let classify = call.classify;
        // Features by name are encoded here, so the answer can say which
        // rows had an unseen category and carry the label.
        let named = m.tabular.as_ref().filter(|t| t.named(&call.inputs));
        let (inputs, unseen) = match named {
            Some(t) => match t.encode(call.inputs) {
                Ok((inputs, unseen)) => (inputs, t.flags_unseen().then_some(unseen)),
                Err(e) => {
                    m.stats.fail(FailReason::Invalid, Duration::ZERO);
                    return Err(e.into());
                }
            },
            None => (call.inputs, None),
        };
        let wants_labels = named.is_some() || call.outputs.iter().any(|o| is_label(o));
        let mut ran = m.infer(&s.repo, inputs, call.deadline, live).await?;
        f.timing = Some(ran.timing);
        f.steps = std::mem::take(&mut ran.steps);
        let kept_as = match &m.truth {
            Some(truth) if live && s.feedback.enabled() => {
                let (id, minted) = match call_id {
                    Some(id) => (id, false),
                    None => (self.answer_id(head, f), true),
                };
                s.feedback
                    .record(&m.name, &m.version, truth, &id, &ran.outputs);
                minted.then_some(id)
            }
            _ => None,
        };
        f.kept_as.clone_from(&kept_as);
        if let Some((target, copy)) = shadow {
            s.shadows
                .send(&s.repo, &m.name, target, copy, ran.outputs.clone());
        }
        let mut extra = Vec::new();
        if let Some(truth) = m.labels().filter(|_| wants_labels) {
            // A model output of the same name (an imported classifier's
            // `label`) stays the only one.
            let added = crate::tabular::labelled(truth, &ran.outputs)
                .into_iter()
                .flatten();
            extra.extend(added.filter(|(n, _)| m.output_spec(n).is_none()));
        }
        if let Some(rows) = unseen {
            extra.push((crate::tabular::UNSEEN, crate::tabular::flags(&rows)?));
        }
        let mut outputs = ran.outputs;
        for (name, k) in &classify {
            let i = m.metadata.outputs.iter().position(|o| &o.name == name);
            if let Some(t) = i.and_then(|i| outputs.get_mut(i)) {
                let labels = m.class_labels.get(name).map(Vec::as_slice);
                let batched = m.config.max_batch_size() > 0;
                *t = crate::classify::classify(name, t, *k, batched, labels)?;
            }
        }
        let answer = Answer {
            model: m.clone(),
            outputs,
            extra,
            id: kept_as,
        };
        if f.keep {
            let named = answer.named().map(|(n, t)| (n.to_string(), t.clone()));
            f.outputs = Some(named.collect());
        }
        let big = W::encode_off_thread(&answer);
        let encoded = self
            .cpu(big, "response encoder", move || W::encode(&answer, keep))
            .await??;
        let reply = W::Transport::reply(&self.state, head, encoded).await?;
        m.answered(received);
        drop(ticket);
        Ok(reply)
    }

    /// The version a request goes to: the one it names, the one its label
    /// names, or the traffic split's pick (sticky on the split's header).
    /// A model out of memory under the budget is loaded first, within the
    /// client's deadline; how long that took comes back with it.
    pub(crate) async fn route(
        &self,
        head: &Head,
    ) -> Result<(Arc<LoadedModel>, Option<Duration>), ServeError> {
        let s = &self.state;
        let r = &head.route;
        let (m, loaded_for) = s
            .repo
            .lookup_timed(&r.model, head.client_deadline(), |models| {
                crate::traffic::resolve(
                    models,
                    &s.traffic,
                    &r.model,
                    r.version.as_deref(),
                    r.label.as_deref(),
                    &|h| head.headers.get(h).map(|v| v.as_bytes().to_vec()),
                )
            })
            .await?;
        // Only eviction reads it: without a budget, no shared write per
        // request.
        if s.repo.memory().limit.is_some() {
            m.last_used.touch();
        }
        Ok((m, loaded_for))
    }

    /// The id an answer is kept under when its request brought none: the
    /// observation's request id, the client's `x-request-id`, or a new one.
    fn answer_id(&self, head: &Head, f: &Facts) -> String {
        if let Some(id) = &f.request_id {
            return id.clone();
        }
        head.header("x-request-id")
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(crate::observe::context::request_id, str::to_string)
    }

    /// [`crate::offload::cpu`] with the server's permits.
    pub(crate) async fn cpu<T: Send + 'static>(
        &self,
        big: bool,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        crate::offload::cpu(&self.state.limits.heavy, big, what, f).await
    }
}

/// The outputs a classifier with a card adds on request.
fn is_label(name: &str) -> bool {
    name == crate::tabular::LABEL || name == crate::tabular::PROBABILITY
}

/// Every output a call names must exist.
fn check_outputs(m: &LoadedModel, wanted: &[String]) -> Result<(), ServeError> {
    let exists = |w: &str| m.output_spec(w).is_some() || (is_label(w) && m.labels().is_some());
    match wanted.iter().find(|w| !exists(w)) {
        Some(w) => Err(Error::invalid(format!("unknown output '{w}' requested")).into()),
        None => Ok(()),
    }
}
