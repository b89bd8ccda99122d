//! Request validation: the inputs a client sent, checked against what a
//! model version accepts (names, dtypes, shapes, batch size) and put in the
//! model's input order.

use hone_core::{Error, NamedTensor, Result, Tensor, TensorSpec};

/// Checks names, dtypes and shapes against `specs` and returns the tensors
/// in model input order. `max_batch_size` 0 means the model does not batch.
pub fn prepare_inputs(
    model: &str,
    specs: &[TensorSpec],
    max_batch_size: u32,
    inputs: Vec<NamedTensor>,
) -> Result<Vec<Tensor>> {
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (name, t) in inputs {
        let Some((slot, spec)) = slots.iter_mut().zip(specs).find(|(_, s)| s.name == name) else {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "unexpected input '{name}' for model '{model}' (inputs: {names:?})"
            )));
        };
        if slot.is_some() {
            return Err(Error::invalid(format!(
                "input '{name}' given more than once"
            )));
        }
        let shape_fits = t.shape.len() == spec.dims.len()
            && t.shape
                .iter()
                .zip(&spec.dims)
                .all(|(&got, &want)| want < 0 || got == want);
        if t.dtype != spec.dtype || !shape_fits {
            return Err(Error::invalid(format!(
                "input '{name}': expected {} {:?}, received {} {:?}",
                spec.dtype, spec.dims, t.dtype, t.shape
            )));
        }
        let mbs = i64::from(max_batch_size);
        if mbs > 0 {
            let b = t.shape.first().copied().unwrap_or(0);
            if b < 1 || b > mbs {
                return Err(Error::invalid(format!(
                    "input '{name}': batch size {b} is outside 1..={mbs} (max_batch_size)"
                )));
            }
        }
        // Some engines cannot run an empty tensor and fail with a server
        // error; what the client sent is the cause, so say so.
        if t.shape.contains(&0) {
            return Err(Error::invalid(format!(
                "input '{name}' has shape {:?}: a zero-sized dimension means no data to infer",
                t.shape
            )));
        }
        *slot = Some(t);
    }
    let mut out: Vec<Tensor> = Vec::with_capacity(slots.len());
    for (slot, spec) in slots.into_iter().zip(specs) {
        out.push(slot.ok_or_else(|| Error::invalid(format!("missing input '{}'", spec.name)))?);
    }
    let first_batch = out.first().and_then(|t| t.shape.first());
    if max_batch_size > 0 && out.iter().any(|t| t.shape.first() != first_batch) {
        return Err(Error::invalid(
            "all inputs must have the same batch size (dim 0)",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use hone_core::DataType;

    use super::*;

    #[test]
    fn a_zero_sized_dimension_is_the_clients_error() {
        let spec = TensorSpec {
            name: "ids".into(),
            dtype: DataType::I64,
            dims: vec![-1, -1],
        };
        let t = Tensor::new(
            DataType::I64,
            vec![1, 0],
            hone_core::TensorData::Raw(Default::default()),
        )
        .unwrap();
        let e = prepare_inputs("m", &[spec], 8, vec![("ids".into(), t)]).unwrap_err();
        assert_eq!(e.kind, hone_core::ErrorKind::InvalidInput);
        assert!(e.message.contains("zero-sized dimension"), "{e}");
    }
}
