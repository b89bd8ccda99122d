//! One ONNX Runtime session as a hone [`Backend`]: building it from a model
//! file with the session knobs, its signature, and batched calls that write
//! every request straight into one ORT-allocated input tensor. Instances of
//! a model can share one session, and with it one copy of the weights.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;
use hone_core::{Backend, DataType, Error, ModelMetadata, Result, Tensor, TensorData, TensorSpec};
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, DynTensorValueType, TensorElementType, ValueType};

/// ORT graph optimization level, as Triton's `optimization { graph { level } }`
/// spells it: -1 disables, 0/1 basic, 2 extended, 99 (or any other) all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

impl GraphOptimization {
    pub fn from_triton_level(level: i64) -> Self {
        match level {
            i64::MIN..=-1 => Self::Disable,
            0 | 1 => Self::Basic,
            2 => Self::Extended,
            _ => Self::All,
        }
    }
}

/// Per-session knobs. Zero thread counts leave ORT's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionConfig {
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub optimization: GraphOptimization,
    /// Spinning intra-op threads cut latency a little but burn CPU the network
    /// threads need, so it is off unless asked for.
    pub allow_spinning: bool,
    /// Custom operator libraries (onnxruntime-extensions, say) registered
    /// with the session before the model is read.
    pub op_libraries: Vec<std::path::PathBuf>,
}

pub struct OrtBackend {
    /// Shared by the instances made with [`Backend::share`]: ONNX Runtime's
    /// `Run` may be called on one session from several threads at once.
    session: Arc<Session>,
    metadata: ModelMetadata,
    allocator: Allocator,
    /// Input and output names as C strings, in metadata order, for `Run`.
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

fn ort_err(context: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::internal(format!("{context}: {e}"))
}

/// A failed run. Inputs reach the engine only after the server checked
/// their names, dtypes and shapes against the model, so what ONNX Runtime
/// still refuses depends on the values the client chose (a sequence longer
/// than the model's position table, a token id past the vocabulary): the
/// request's fault, InvalidInput. Running out of memory is the server's
/// capacity, Unavailable.
fn run_error(e: ort::Error) -> Error {
    let m = e.message();
    if m.contains("Failed to allocate") || m.contains("bad_alloc") || m.contains("out of memory") {
        Error::unavailable(format!(
            "not enough memory to run the model on this input: {m}"
        ))
    } else {
        Error::invalid(format!("the model cannot run on this input: {m}"))
    }
}

fn to_dtype(t: TensorElementType) -> Option<DataType> {
    Some(match t {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_ort(d: DataType) -> TensorElementType {
    match d {
        DataType::Bool => TensorElementType::Bool,
        DataType::U8 => TensorElementType::Uint8,
        DataType::U16 => TensorElementType::Uint16,
        DataType::U32 => TensorElementType::Uint32,
        DataType::U64 => TensorElementType::Uint64,
        DataType::I8 => TensorElementType::Int8,
        DataType::I16 => TensorElementType::Int16,
        DataType::I32 => TensorElementType::Int32,
        DataType::I64 => TensorElementType::Int64,
        DataType::F16 => TensorElementType::Float16,
        DataType::Bf16 => TensorElementType::Bfloat16,
        DataType::F32 => TensorElementType::Float32,
        DataType::F64 => TensorElementType::Float64,
        DataType::Bytes => TensorElementType::String,
    }
}

fn spec(name: &str, ty: &ValueType, what: &str) -> Result<TensorSpec> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let dtype = to_dtype(*ty).ok_or_else(|| {
                Error::invalid(format!(
                    "{what} '{name}' has element type {ty:?}, which hone does not serve"
                ))
            })?;
            Ok(TensorSpec {
                name: name.to_string(),
                dtype,
                dims: shape.iter().copied().collect(),
            })
        }
        other => Err(Error::invalid(format!(
            "{what} '{name}' is a {other:?}, not a tensor; hone serves tensor inputs and outputs only"
        ))),
    }
}

impl OrtBackend {
    fn builder(cfg: &SessionConfig) -> Result<ort::session::builder::SessionBuilder> {
        let (_, env) = crate::library::environment()?;
        let level = match cfg.optimization {
            GraphOptimization::Disable => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::All,
        };
        let e = |e: ort::Error<_>| Error::internal(format!("session options: {e}"));
        let mut b = Session::builder(env)
            .map_err(ort_err("session builder"))?
            .with_optimization_level(level)
            .map_err(e)?
            .with_intra_op_spinning(cfg.allow_spinning)
            .map_err(e)?
            .with_inter_op_spinning(cfg.allow_spinning)
            .map_err(e)?;
        if cfg.intra_op_threads > 0 {
            b = b.with_intra_threads(cfg.intra_op_threads).map_err(e)?;
        }
        if cfg.inter_op_threads > 0 {
            b = b.with_inter_threads(cfg.inter_op_threads).map_err(e)?;
        }
        for lib in &cfg.op_libraries {
            b = b.with_operator_library(lib).map_err(|e| {
                Error::invalid(format!("custom operator library {}: {e}", lib.display()))
            })?;
        }
        Ok(b)
    }

    /// Loads an ONNX file. Corrupt files and unsupported ops come back as
    /// errors naming the file.
    pub fn load(path: &Path, cfg: &SessionConfig) -> Result<Self> {
        let session = Self::builder(cfg)?
            .commit_from_file(path)
            .map_err(|e| Error::invalid(format!("cannot load {}: {e}", path.display())))?;
        Self::from_session(session)
    }

    /// Runs ONNX Runtime's graph optimizations on `model` and writes the
    /// optimized graph to `out` (ORT's "offline" mode).
    pub fn save_optimized(model: &[u8], cfg: &SessionConfig, out: &Path) -> Result<()> {
        let e = |e: ort::Error<_>| Error::internal(format!("cannot optimize the model: {e}"));
        Self::builder(cfg)?
            .with_optimized_model_path(out)
            .map_err(e)?
            .commit_from_memory(model)
            .map_err(|e| Error::invalid(format!("cannot load model: {e}")))?;
        Ok(())
    }

    pub fn from_bytes(model: &[u8], cfg: &SessionConfig) -> Result<Self> {
        let session = Self::builder(cfg)?
            .commit_from_memory(model)
            .map_err(|e| Error::invalid(format!("cannot load model: {e}")))?;
        Self::from_session(session)
    }

    fn from_session(session: Session) -> Result<Self> {
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "input"))
            .collect::<Result<_>>()?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype(), "output"))
            .collect::<Result<_>>()?;
        let c = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(|t| {
                    CString::new(t.name.as_str()).map_err(|_| {
                        Error::invalid(format!("tensor name '{}' holds a NUL", t.name))
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let metadata = ModelMetadata { inputs, outputs };
        Ok(Self {
            input_names: c(&metadata.inputs)?,
            output_names: c(&metadata.outputs)?,
            session: Arc::new(session),
            metadata,
            allocator: Allocator::default(),
        })
    }

    /// One `Run` of the shared session. ort's `Session::run` takes `&mut`
    /// to tie its outputs' lifetime to the session; ONNX Runtime itself
    /// documents `Run` as safe to call concurrently on one session, which
    /// is what lets instances share it. Outputs come back owned.
    fn run(&self, inputs: &[SessionInputValue<'static>]) -> Result<Vec<ort::value::DynValue>> {
        let names_in: Vec<*const c_char> = self.input_names.iter().map(|n| n.as_ptr()).collect();
        let values: Vec<*const ort::sys::OrtValue> =
            inputs.iter().map(|v| ort::AsPointer::ptr(&**v)).collect();
        let names_out: Vec<*const c_char> = self.output_names.iter().map(|n| n.as_ptr()).collect();
        let mut outputs: Vec<*mut ort::sys::OrtValue> = vec![std::ptr::null_mut(); names_out.len()];
        let session = ort::AsPointer::ptr(&*self.session).cast_mut();
        // SAFETY: every pointer is valid for the call: the session lives in
        // `self`, the names in `self`, the input values in `inputs`, and
        // `outputs` has room for one value per output name.
        let status = unsafe {
            (ort::api().Run)(
                session,
                std::ptr::null(),
                names_in.as_ptr(),
                values.as_ptr(),
                values.len(),
                names_out.as_ptr(),
                names_out.len(),
                outputs.as_mut_ptr(),
            )
        };
        // SAFETY: `status` came from the call above and is freed here.
        unsafe { ort::Error::result_from_status(status) }.map_err(run_error)?;
        // Every value ORT returned is owned first, so none leaks when one
        // is missing.
        let owned: Vec<Option<ort::value::DynValue>> = outputs
            .into_iter()
            .map(|p| {
                // SAFETY: ORT handed over ownership of the value; it is
                // released when the wrapper drops. ort keeps the allocator
                // handle only to outlive the value; the tensor's memory
                // belongs to the session's CPU allocator, read by copy
                // before `infer` returns.
                NonNull::new(p)
                    .map(|p| unsafe { ort::value::DynValue::from_ptr(p, Some(&self.allocator)) })
            })
            .collect();
        owned
            .into_iter()
            .zip(&self.metadata.outputs)
            .map(|(v, spec)| {
                v.ok_or_else(|| Error::internal(format!("ORT returned no output '{}'", spec.name)))
            })
            .collect()
    }

    fn input_value(&self, batch: &[&[Tensor]], i: usize) -> Result<SessionInputValue<'static>> {
        let spec = &self.metadata.inputs[i];
        let first = batch
            .first()
            .and_then(|r| r.get(i))
            .ok_or_else(|| Error::internal(format!("input '{}' missing from batch", spec.name)))?;
        let mut shape = first.shape.clone();
        if batch.len() > 1 {
            let rows: i64 = batch
                .iter()
                .map(|r| r[i].shape.first().copied().unwrap_or(1))
                .sum();
            match shape.first_mut() {
                Some(d0) => *d0 = rows,
                None => return Err(Error::internal("cannot batch a scalar input")),
            }
        }
        if first.dtype == DataType::Bytes {
            let mut strings: Vec<String> = Vec::new();
            for r in batch {
                let TensorData::Strings(items) = &r[i].data else {
                    return Err(Error::internal("BYTES input without string payload"));
                };
                for s in items {
                    let s = std::str::from_utf8(s).map_err(|_| {
                        Error::invalid(format!(
                            "input '{}': ONNX string tensors must be UTF-8",
                            spec.name
                        ))
                    })?;
                    strings.push(s.to_owned());
                }
            }
            let t = ort::value::Tensor::from_string_array((shape, &strings[..]))
                .map_err(|e| Error::invalid(format!("input '{}': {e}", spec.name)))?;
            return Ok(t.into_dyn().into());
        }
        let elem = first.dtype.size().unwrap_or(1);
        let want = hone_core::element_count(&shape)?
            .checked_mul(elem)
            .ok_or_else(|| Error::invalid("input too large"))?;
        // None when a payload is not raw bytes or the sum overflows: both mean
        // the batch cannot fill this tensor.
        let have = batch.iter().try_fold(0usize, |acc, r| match &r[i].data {
            TensorData::Raw(b) if r[i].dtype == first.dtype => acc.checked_add(b.len()),
            _ => None,
        });
        if have != Some(want) {
            return Err(Error::internal(format!(
                "input '{}': batch payload ({have:?} bytes) does not fill shape {shape:?}",
                spec.name
            )));
        }
        let mut t = DynTensor::new(&self.allocator, to_ort(first.dtype), shape)
            .map_err(ort_err("allocate input"))?;
        // Stacking the requests straight into ORT's buffer is the one copy of
        // input data on the whole path.
        let dst = t.data_ptr_mut().cast::<u8>();
        let mut off = 0usize;
        for r in batch {
            if let TensorData::Raw(b) = &r[i].data {
                // SAFETY: `dst` holds `want` bytes (checked above to equal the
                // sum of all payload lengths) and does not overlap `b`.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(off), b.len()) };
                off += b.len();
            }
        }
        Ok(t.into())
    }
}

impl Backend for OrtBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn share(&self) -> Option<Box<dyn Backend>> {
        Some(Box::new(OrtBackend {
            session: self.session.clone(),
            metadata: self.metadata.clone(),
            allocator: Allocator::default(),
            input_names: self.input_names.clone(),
            output_names: self.output_names.clone(),
        }))
    }

    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        let inputs = (0..self.metadata.inputs.len())
            .map(|i| self.input_value(batch, i))
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.run(&inputs)?;
        let mut result = Vec::with_capacity(self.metadata.outputs.len());
        for (spec, value) in self.metadata.outputs.iter().zip(outputs) {
            let (ty, shape) = match value.dtype() {
                ValueType::Tensor { ty, shape, .. } => {
                    (*ty, shape.iter().copied().collect::<Vec<i64>>())
                }
                other => {
                    return Err(Error::internal(format!(
                        "output '{}' is {other:?}",
                        spec.name
                    )));
                }
            };
            let dtype = to_dtype(ty).ok_or_else(|| {
                Error::internal(format!("output '{}' has type {ty:?}", spec.name))
            })?;
            let data = if dtype == DataType::Bytes {
                let (_, strings) = value
                    .try_extract_strings()
                    .map_err(ort_err("read string output"))?;
                TensorData::Strings(strings.into_iter().map(Bytes::from).collect())
            } else {
                let t = value
                    .downcast::<DynTensorValueType>()
                    .map_err(ort_err("read output"))?;
                let len = hone_core::element_count(&shape)? * dtype.size().unwrap_or(1);
                let ptr = t.data_ptr().cast::<u8>();
                // SAFETY: ORT owns `len` readable bytes at `ptr` for the
                // lifetime of `t`; they are copied out before `t` drops.
                let bytes = if len == 0 {
                    Vec::new()
                } else {
                    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
                };
                TensorData::Raw(Bytes::from(bytes))
            };
            result.push(Tensor { dtype, shape, data });
        }
        Ok(result)
    }
}
