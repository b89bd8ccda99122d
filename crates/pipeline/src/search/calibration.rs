//! Calibration for the static int8 candidates: the batches it runs on, the
//! activation ranges per method (computed once, shared by every candidate
//! that uses the method), and the QDQ options a static recipe asks for.

use std::collections::{HashMap, HashSet};

use hone_core::Tensor;
use hone_onnx::proto::ModelProto;
use hone_optimize::{calibrate, qdq};
use hone_runtime::SessionConfig;

use super::options::OptimizeOptions;
use super::recipe::Static;
use super::setup::Setup;
use crate::eval;
use crate::{PipelineError, Result};

pub(crate) struct Calibration {
    /// Rows calibrated on.
    pub rows: usize,
    batches: Vec<Vec<Tensor>>,
    act_tensors: Vec<String>,
    ranges: HashMap<String, calibrate::Ranges>,
}

impl Calibration {
    /// Batches from --calibration, else the first rows of EVAL.
    pub fn new(s: &Setup, opts: &OptimizeOptions) -> Result<Calibration> {
        let cal_ds = match &opts.calibration {
            Some(p) => eval::load_dataset(
                p,
                &opts.target,
                &s.meta,
                s.card.as_ref(),
                s.imported.as_ref(),
            )?,
            None => s.scorer.ds.clone(),
        };
        let rows = cal_ds.rows.min(opts.calibration_rows.max(1));
        let cal_batch = if s.batchable {
            ((8 << 20) / s.row_bytes).clamp(1, 32)
        } else {
            1
        };
        let batches = (0..rows)
            .step_by(cal_batch)
            .map(|st| cal_ds.slice(st, (st + cal_batch).min(rows)))
            .collect();
        let act_tensors = calibrate::activation_tensors(&s.fp32).map_err(PipelineError::from)?;
        Ok(Calibration {
            rows,
            batches,
            act_tensors,
            ranges: HashMap::new(),
        })
    }

    /// The ranges of `method`, calibrating on first use.
    pub fn ranges(
        &mut self,
        fp32: &ModelProto,
        method: calibrate::Method,
        cfg: &SessionConfig,
    ) -> Result<&calibrate::Ranges> {
        let key = method.name();
        if !self.ranges.contains_key(&key) {
            let r = calibrate::calibrate(fp32, &self.act_tensors, &self.batches, method, cfg)
                .map_err(PipelineError::from)?;
            self.ranges.insert(key.clone(), r);
        }
        self.ranges
            .get(&key)
            .ok_or_else(|| PipelineError::Message(format!("no {key} ranges")))
    }

    /// Min/max of any tensors of `fp32` over the calibration batches.
    pub fn minmax_of(
        &self,
        fp32: &ModelProto,
        tensors: &[String],
        cfg: &SessionConfig,
    ) -> Result<calibrate::Ranges> {
        calibrate::calibrate(fp32, tensors, &self.batches, calibrate::Method::MinMax, cfg)
            .map_err(PipelineError::from)
    }

    /// The ranges a static recipe was built with, if already calibrated.
    pub fn computed(&self, recipe: Static) -> Option<&calibrate::Ranges> {
        self.ranges.get(&recipe.method.method().name())
    }
}

/// The QDQ options a static recipe asks for: per-channel weights, and int8
/// or uint8 activations.
pub(crate) fn static_options(recipe: Static, exclude: HashSet<String>) -> qdq::StaticOptions {
    qdq::StaticOptions {
        per_channel: true,
        activations: if recipe.s8_activations {
            qdq::ActType::S8
        } else {
            qdq::ActType::U8
        },
        exclude,
        reduce_range: qdq::StaticOptions::needs_reduce_range(),
    }
}
