//! The space-to-depth candidate: the static int8 candidate chosen so far,
//! rebuilt on the graph with its image stems rewritten (`hone_optimize::s2d`).

use std::collections::HashSet;

use hone_onnx::proto::ModelProto;
use hone_optimize::{qdq, s2d};

use super::calibration::{Calibration, static_options};
use super::judge::Scorer;
use super::recipe::{Recipe, Static};
use super::report::Candidate;

/// Static candidate `src` rebuilt on the graph with its image stems
/// rewritten to space-to-depth; None when the model has no such stem.
pub(crate) fn s2d_candidate(
    scorer: &Scorer,
    fp32: &ModelProto,
    src: Static,
    cal: &Calibration,
) -> Option<Candidate> {
    let recipe = Recipe::SpaceToDepth(src);
    let (m, stems) = match s2d::space_to_depth_stems(fp32) {
        Ok(Some(x)) => x,
        Ok(None) => return None,
        Err(e) => return Some(Candidate::failed(recipe, &e.to_string())),
    };
    // The packed image holds the stem input's values (and pad zeros, which
    // every activation range includes), so its range is the input's.
    let mut r = cal.computed(src)?.clone();
    for st in &stems {
        let Some(&v) = r.get(&st.source) else {
            let why = format!("stem input {:?} has no calibrated range", st.source);
            return Some(Candidate::failed(recipe, &why));
        };
        r.insert(st.packed.clone(), v);
    }
    let so = static_options(src, HashSet::new());
    Some(match qdq::quantize_static(&m, &r, &so) {
        Ok((q, _)) => {
            let convs: Vec<&str> = stems.iter().map(|s| s.conv.as_str()).collect();
            scorer.candidate(
                recipe,
                format!(
                    "{src} with stem conv(s) {} run as space-to-depth then a stride-1 conv over 4× the channels",
                    convs.join(", ")
                ),
                hone_onnx::encode(&q),
            )
        }
        Err(e) => Candidate::failed(recipe, &e.to_string()),
    })
}
