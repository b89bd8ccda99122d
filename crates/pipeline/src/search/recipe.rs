//! What a candidate is made of. The plan lists recipes, `build` builds
//! them, the report shows their names; nothing parses a name back.

use std::fmt;

use hone_optimize::calibrate;

use super::options::Technique;

/// One candidate's recipe.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// The model as given (the baseline).
    Input,
    GraphOpt,
    Fp16,
    Dynamic(Dynamic),
    Static(Static),
    PruneStructured,
    PruneMagnitude,
    /// The structured-pruned model's remaining weights in dynamic int8.
    PrunedInt8,
    /// An int8 recipe with its most sensitive nodes left in fp32.
    Fallback(Box<Recipe>),
    /// A static recipe with the node kinds slower in int8 left float.
    LatencyAware(Static),
    /// A static recipe on the graph with its image stems as space-to-depth.
    SpaceToDepth(Static),
}

/// Dynamic int8: weights int8, activations quantized per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dynamic {
    /// Weight scales per output column, not per tensor.
    pub per_channel: bool,
    /// Gather tables (embeddings) in int8 too. The per-tensor variant
    /// always does, like onnxruntime's quantize_dynamic.
    pub embeddings: bool,
}

/// Static (QDQ) int8 with calibrated activation ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Static {
    pub method: CalMethod,
    /// Activations int8 rather than uint8.
    pub s8_activations: bool,
}

/// How the activation ranges of a static recipe are calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalMethod {
    MinMax,
    Percentile,
    Entropy,
}

impl CalMethod {
    pub fn method(self) -> calibrate::Method {
        match self {
            CalMethod::MinMax => calibrate::Method::MinMax,
            CalMethod::Percentile => calibrate::Method::Percentile(99.999),
            CalMethod::Entropy => calibrate::Method::Entropy,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CalMethod::MinMax => "minmax",
            CalMethod::Percentile => "percentile",
            CalMethod::Entropy => "entropy",
        }
    }
}

impl Recipe {
    /// The technique flag that plans it.
    pub fn technique(&self) -> Technique {
        match self {
            Recipe::Input | Recipe::GraphOpt => Technique::Graph,
            Recipe::Fp16 => Technique::Fp16,
            Recipe::Dynamic(_) => Technique::Dynamic,
            Recipe::Static(_) | Recipe::LatencyAware(_) | Recipe::SpaceToDepth(_) => {
                Technique::Static
            }
            Recipe::PruneStructured | Recipe::PruneMagnitude | Recipe::PrunedInt8 => {
                Technique::Prune
            }
            Recipe::Fallback(_) => Technique::Fallback,
        }
    }

    /// The report's technique column.
    pub fn technique_label(&self) -> &'static str {
        match self {
            Recipe::Input => "none",
            Recipe::PrunedInt8 => "pruning + int8 dynamic",
            r => r.technique().label(),
        }
    }

    /// A plain int8 recipe, which per-node fallback can start from.
    pub fn is_plain_int8(&self) -> bool {
        matches!(self, Recipe::Dynamic(_) | Recipe::Static(_))
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::Input => f.write_str("fp32"),
            Recipe::GraphOpt => f.write_str("graph-opt"),
            Recipe::Fp16 => f.write_str("fp16"),
            Recipe::Dynamic(d) => {
                f.write_str("int8-dynamic")?;
                if d.per_channel {
                    f.write_str("-per-channel")?;
                    if d.embeddings {
                        f.write_str("+emb")?;
                    }
                }
                Ok(())
            }
            Recipe::Static(s) => write!(f, "{s}"),
            Recipe::PruneStructured => f.write_str("prune-structured"),
            Recipe::PruneMagnitude => f.write_str("prune-magnitude"),
            Recipe::PrunedInt8 => f.write_str("prune-structured+int8-dynamic"),
            Recipe::Fallback(r) => write!(f, "{r}+fallback"),
            Recipe::LatencyAware(s) => write!(f, "{s}+latency"),
            Recipe::SpaceToDepth(s) => write!(f, "{s}+s2d"),
        }
    }
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "int8-static-{}", self.method.name())?;
        if self.s8_activations {
            f.write_str("-s8s8")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names reports, scripts and `--keep-candidates` files carry.
    #[test]
    fn names_are_the_published_ones() {
        let st = |method, s8_activations| Static {
            method,
            s8_activations,
        };
        let dy = |per_channel, embeddings| {
            Recipe::Dynamic(Dynamic {
                per_channel,
                embeddings,
            })
        };
        let cases = [
            (Recipe::Input, "fp32"),
            (dy(false, true), "int8-dynamic"),
            (dy(true, false), "int8-dynamic-per-channel"),
            (dy(true, true), "int8-dynamic-per-channel+emb"),
            (
                Recipe::Static(st(CalMethod::MinMax, true)),
                "int8-static-minmax-s8s8",
            ),
            (
                Recipe::LatencyAware(st(CalMethod::Entropy, false)),
                "int8-static-entropy+latency",
            ),
            (
                Recipe::SpaceToDepth(st(CalMethod::Percentile, false)),
                "int8-static-percentile+s2d",
            ),
            (
                Recipe::Fallback(Box::new(dy(true, false))),
                "int8-dynamic-per-channel+fallback",
            ),
            (Recipe::PrunedInt8, "prune-structured+int8-dynamic"),
        ];
        for (r, name) in cases {
            assert_eq!(r.to_string(), name);
        }
        assert_eq!(
            Recipe::PrunedInt8.technique_label(),
            "pruning + int8 dynamic"
        );
        assert!(!Recipe::SpaceToDepth(st(CalMethod::MinMax, false)).is_plain_int8());
    }
}
