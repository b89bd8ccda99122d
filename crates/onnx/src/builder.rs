//! A small builder for the graphs hone writes (exported MLPs, rewritten
//! graphs): unique value names, typed inputs and outputs, initializers.

use crate::proto::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_shape_proto, type_proto,
};

/// The IR version hone writes: 8 is read by every ONNX Runtime since 1.10.
pub const IR_VERSION: i64 = 8;
/// The default-domain opset hone writes.
pub const OPSET: i64 = 17;

/// One dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension such as `batch`.
    Named(String),
}

/// A node attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    String(String),
    Tensor(Box<TensorProto>),
}

pub fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = AttributeType::Int as i32;
            a.i = i;
        }
        Attr::Float(f) => {
            a.r#type = AttributeType::Float as i32;
            a.f = f;
        }
        Attr::Ints(v) => {
            a.r#type = AttributeType::Ints as i32;
            a.ints = v;
        }
        Attr::Floats(v) => {
            a.r#type = AttributeType::Floats as i32;
            a.floats = v;
        }
        Attr::String(s) => {
            a.r#type = AttributeType::String as i32;
            a.s = s.into_bytes();
        }
        Attr::Tensor(t) => {
            a.r#type = AttributeType::Tensor as i32;
            a.t = Some(*t);
        }
    }
    a
}

pub fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(proto::TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

#[derive(Debug, Default)]
pub struct GraphBuilder {
    pub graph: GraphProto,
    counter: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            counter: 0,
        }
    }

    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem_type, dims));
        name.to_string()
    }

    pub fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem_type, dims));
    }

    /// Adds a constant tensor and returns its name.
    pub fn initializer(&mut self, tensor: TensorProto) -> String {
        let name = tensor.name.clone();
        self.graph.initializer.push(tensor);
        name
    }

    /// Adds a node with one output; `output` names it, or a unique name is
    /// made from the op type. Returns the output name.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: Option<&str>,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        self.counter += 1;
        let out = output
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}_{}", op_type.to_lowercase(), self.counter));
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{op_type}_{}", self.counter),
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
        out
    }

    /// Wraps the graph into a model with hone's IR version and opset.
    pub fn finish(self, producer_version: &str, metadata: &[(&str, String)]) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: crate::OPSET,
            }],
            producer_name: "hone".into(),
            producer_version: producer_version.to_string(),
            graph: Some(self.graph),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| proto::StringStringEntryProto {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}
