//! The trained MLP as an ONNX graph that takes raw feature values:
//! standardisation and one-hot encoding are part of the graph, so a served
//! model needs no preprocessing beyond the category indices in the card.

use hone_data::{FeatureKind, Task};
use hone_onnx::{Attr, Dim, GraphBuilder, ModelProto, elem, tensor_f32, tensor_i64};

use crate::Mlp;

pub const INPUT: &str = "input";
pub const OUTPUT: &str = "output";

impl Mlp {
    /// The model as ONNX (IR 8, opset 17), batch dimension named `batch`.
    pub fn to_onnx(&self, metadata: &[(&str, String)]) -> ModelProto {
        let enc = &self.encoding;
        let mut g = GraphBuilder::new("hone_mlp");
        let batch = Dim::Named("batch".into());
        let x = g.input(
            INPUT,
            elem::FLOAT,
            &[batch.clone(), Dim::Fixed(enc.input_width() as i64)],
        );
        let numeric = self.numeric_columns();
        let all_numeric = numeric.len() == enc.features.len();
        let n = numeric.len() as i64;

        // Numeric part: Sub(mean) → Div(std), on a Gather of the numeric columns
        // unless every column is numeric.
        let mut parts = Vec::new();
        if !numeric.is_empty() {
            let src = if all_numeric {
                x.clone()
            } else {
                let idx = g.initializer(tensor_i64(
                    "numeric_columns",
                    &[n],
                    &numeric.iter().map(|&c| c as i64).collect::<Vec<_>>(),
                ));
                g.node("Gather", &[&x, &idx], None, vec![("axis", Attr::Int(1))])
            };
            let mean = g.initializer(tensor_f32("feature_mean", &[n], &self.mean));
            let std = g.initializer(tensor_f32("feature_std", &[n], &self.std));
            let centered = g.node("Sub", &[&src, &mean], None, vec![]);
            parts.push(g.node("Div", &[&centered, &std], Some("standardized"), vec![]));
        }
        // Categorical parts: the column's index compared with 0..k gives the one-hot row.
        for (c, f) in enc.features.iter().enumerate() {
            if let FeatureKind::Categorical { categories } = &f.kind {
                let k = categories.len();
                let idx = g.initializer(tensor_i64(&format!("column_{c}"), &[1], &[c as i64]));
                let col = g.node("Gather", &[&x, &idx], None, vec![("axis", Attr::Int(1))]);
                let codes: Vec<f32> = (0..k).map(|i| i as f32).collect();
                let range =
                    g.initializer(tensor_f32(&format!("categories_{c}"), &[k as i64], &codes));
                let eq = g.node("Equal", &[&col, &range], None, vec![]);
                parts.push(g.node(
                    "Cast",
                    &[&eq],
                    Some(&format!("onehot_{c}")),
                    vec![("to", Attr::Int(elem::FLOAT as i64))],
                ));
            }
        }
        let mut h = if parts.len() == 1 {
            parts.remove(0)
        } else {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            g.node(
                "Concat",
                &refs,
                Some("features"),
                vec![("axis", Attr::Int(1))],
            )
        };

        let last = self.layers.len();
        let task = enc.target.task;
        for (i, l) in self.layers.iter().enumerate() {
            let mut weight = l.weight.clone();
            let mut bias = l.bias.clone();
            if i + 1 == last && task == Task::Regression {
                // Fold the target de-standardisation into the last layer.
                for w in &mut weight {
                    *w *= self.target_std;
                }
                for b in &mut bias {
                    *b = *b * self.target_std + self.target_mean;
                }
            }
            let w = g.initializer(tensor_f32(
                &format!("fc{}.weight", i + 1),
                &[l.outputs as i64, l.inputs as i64],
                &weight,
            ));
            let b = g.initializer(tensor_f32(
                &format!("fc{}.bias", i + 1),
                &[l.outputs as i64],
                &bias,
            ));
            let out_name = (i + 1 == last && task == Task::Regression).then_some(OUTPUT);
            h = g.node(
                "Gemm",
                &[&h, &w, &b],
                out_name,
                vec![("transB", Attr::Int(1))],
            );
            if i + 1 < last {
                h = g.node("Relu", &[&h], None, vec![]);
            }
        }
        match task {
            Task::Binary => {
                g.node("Sigmoid", &[&h], Some(OUTPUT), vec![]);
            }
            Task::Multiclass => {
                g.node("Softmax", &[&h], Some(OUTPUT), vec![("axis", Attr::Int(1))]);
            }
            Task::Regression => {}
        }
        g.output(
            OUTPUT,
            elem::FLOAT,
            &[batch, Dim::Fixed(enc.output_width() as i64)],
        );
        g.finish(crate::HONE_VERSION, metadata)
    }
}
