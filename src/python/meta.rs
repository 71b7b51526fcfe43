//! Bindings of `crate::meta`: backbone specs and forward, and the meta-step.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3_tch::PyTensor;
use tch::Tensor;

use super::convert::tensor_arg;
use super::errors::{guarded, without_gil};
use super::int_arg::{ints, Int};
use crate::error::MfrError;
use crate::limits::{check_memory, product};
use crate::meta::{self, Amp, Backbone, BnMode, Init, Split, StepConfig, StepOutput, StyleMix};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBackboneSpec>()?;
    m.add_function(wrap_pyfunction!(backbone_forward, m)?)?;
    m.add_function(wrap_pyfunction!(meta_step, m)?)?;
    m.add_class::<StepConfig>()?;
    m.add_class::<StepOutput>()?;
    m.add("DEFAULT_TAU_P", meta::step::DEFAULT_TAU_P)?;
    m.add("DEFAULT_TAU_N", meta::step::DEFAULT_TAU_N)?;
    m.add("DEFAULT_SCALE", meta::step::DEFAULT_SCALE)?;
    m.add("BACKBONES", meta::ARCH_NAMES.to_vec())?;
    Ok(())
}

type Spec = (String, Vec<i64>, &'static str);

fn init_name(init: Init) -> &'static str {
    match init {
        Init::Conv => "conv",
        Init::ConvNormal => "conv_normal",
        Init::Linear => "linear",
        Init::Ones => "ones",
        Init::Zeros => "zeros",
        Init::Prelu => "prelu",
    }
}

fn specs(v: &[meta::TensorSpec]) -> Vec<Spec> {
    v.iter().map(|s| (s.name.clone(), s.shape.clone(), init_name(s.init))).collect()
}

/// A backbone architecture: its resolved sizes and the ``(name, shape, init)`` of every parameter
/// and buffer, in the order its forward consumes them. ``mfr.nn.Backbone`` builds one and passes
/// it to every forward and meta-step.
#[pyclass(name = "BackboneSpec", module = "mfr.nn", frozen)]
pub(crate) struct PyBackboneSpec {
    inner: Backbone,
}

#[pymethods]
impl PyBackboneSpec {
    #[new]
    #[pyo3(signature = (name, in_channels, input_size, width=None, embedding_dim=None))]
    fn new(
        name: &str,
        in_channels: Int,
        input_size: Int,
        width: Option<Int>,
        embedding_dim: Option<Int>,
    ) -> PyResult<Self> {
        guarded(|| Ok(PyBackboneSpec { inner: build(name, in_channels, input_size, width, embedding_dim)? }))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn in_channels(&self) -> i64 {
        self.inner.in_channels
    }

    #[getter]
    fn input_size(&self) -> i64 {
        self.inner.input_size
    }

    #[getter]
    fn width(&self) -> i64 {
        self.inner.width
    }

    #[getter]
    fn embedding_dim(&self) -> i64 {
        self.inner.embedding_dim
    }

    /// How many points between stages MixStyle can mix at (0, 1, ... after the first stages).
    #[getter]
    fn style_points(&self) -> usize {
        self.inner.style_points
    }

    /// ``(name, shape, init)`` of every parameter, in forward order.
    #[getter]
    fn params(&self) -> Vec<Spec> {
        specs(&self.inner.params)
    }

    /// ``(name, shape, init)`` of every buffer, in forward order.
    #[getter]
    fn buffers(&self) -> Vec<Spec> {
        specs(&self.inner.buffers)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.args() == other.args()
    }

    fn __repr__(&self) -> String {
        let (name, c, s, w, d) = self.args();
        format!("BackboneSpec('{name}', in_channels={c}, input_size={s}, width={w}, embedding_dim={d})")
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> (Bound<'py, PyType>, (String, i64, i64, i64, i64)) {
        (py.get_type::<Self>(), self.args())
    }
}

impl PyBackboneSpec {
    /// The constructor arguments that rebuild this spec.
    fn args(&self) -> (String, i64, i64, i64, i64) {
        let b = &self.inner;
        (b.name.clone(), b.in_channels, b.input_size, b.width, b.embedding_dim)
    }
}

fn build(
    name: &str,
    in_channels: Int,
    input_size: Int,
    width: Option<Int>,
    embedding_dim: Option<Int>,
) -> PyResult<Backbone> {
    let func = format!("Backbone('{name}')");
    let size = |v: Int, arg: &str| v.get::<i64>(&func, arg, 1, 1 << 20);
    let n = Backbone::new(
        name,
        size(in_channels, "in_channels")?,
        size(input_size, "input_size")?,
        width.map(|w| size(w, "width")).transpose()?,
        embedding_dim.map(|e| size(e, "embedding_dim")).transpose()?,
    )?;
    let numel = |v: &[meta::TensorSpec]| -> u128 {
        v.iter().map(|s| product(&s.shape.iter().map(|&d| d.max(0) as u128).collect::<Vec<_>>())).sum()
    };
    // float32 weights, their gradients and an optimizer's state: a few copies each.
    check_memory(
        &func,
        &format!("width {} and embedding_dim {}", n.width, n.embedding_dim),
        16 * (numel(&n.params) + numel(&n.buffers)),
    )?;
    Ok(n)
}

fn tensors(items: &[Bound<'_, PyAny>], func: &str, what: &str) -> PyResult<Vec<Tensor>> {
    items.iter().enumerate().map(|(i, t)| tensor_arg(t, func, &format!("{what}[{i}]"))).collect()
}

fn bn_mode(mode: &str) -> PyResult<BnMode> {
    match mode {
        "train" => Ok(BnMode::TrainUpdate),
        "train_no_update" => Ok(BnMode::TrainNoUpdate),
        "eval" => Ok(BnMode::Eval),
        other => Err(MfrError::invalid(
            "Backbone.forward",
            format!("mode must be 'train', 'train_no_update' or 'eval', got '{other}'"),
        )
        .into()),
    }
}

/// Embeddings of `images` with explicit parameters (`mode`: train | train_no_update | eval);
/// `momentum` of the running-statistics update in mode train (default 0.1); `mix`: MixStyle's
/// `(partners, weights, points)` (training modes only).
#[pyfunction]
#[pyo3(signature = (spec, params, buffers, images, mode, momentum=None, mix=None))]
#[allow(clippy::too_many_arguments)]
fn backbone_forward(
    py: Python<'_>,
    spec: &PyBackboneSpec,
    params: Vec<Bound<'_, PyAny>>,
    buffers: Vec<Bound<'_, PyAny>>,
    images: &Bound<'_, PyAny>,
    mode: &str,
    momentum: Option<f64>,
    mix: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>, Vec<usize>)>,
) -> PyResult<PyTensor> {
    const F: &str = "Backbone.forward";
    let momentum = momentum.unwrap_or(meta::layers::BN_MOMENTUM);
    guarded(|| {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(MfrError::invalid(F, format!("momentum must be in [0, 1], got {momentum}")).into());
        }
        let n = &spec.inner;
        let (p, b) = (tensors(&params, F, "params")?, tensors(&buffers, F, "buffers")?);
        let x = tensor_arg(images, F, "images")?;
        let mode = bn_mode(mode)?;
        let mix = match mix {
            None => None,
            Some((perm, lam, points)) => {
                if mode == BnMode::Eval {
                    return Err(
                        MfrError::invalid(F, "MixStyle mixes in training passes only, not in mode 'eval'").into()
                    );
                }
                let perm = tensor_arg(&perm, F, "mix partners")?;
                let lam = tensor_arg(&lam, F, "mix weights")?;
                Some(StyleMix { perm, lam, points })
            }
        };
        without_gil(py, move || {
            n.check_inputs(F, &p, &b, &x)?;
            if let Some(mix) = &mix {
                n.check_mix(F, mix, x.size()[0], x.device())?;
            }
            n.forward_mixed(&p, &b, &x, mode, momentum, mix.as_ref())
        })
        .map(PyTensor)
    })
}

/// One MFR meta-step; adds the combined gradient (times `loss_scale`) to the parameters' .grad.
#[pyfunction]
#[pyo3(signature = (spec, params, buffers, domains, splits, config, loss_scale=1.0))]
#[allow(clippy::too_many_arguments)]
fn meta_step(
    py: Python<'_>,
    spec: &PyBackboneSpec,
    params: Vec<Bound<'_, PyAny>>,
    buffers: Vec<Bound<'_, PyAny>>,
    domains: Vec<Bound<'_, PyAny>>,
    splits: Vec<(Vec<Int>, Vec<Int>)>,
    config: &StepConfig,
    loss_scale: f64,
) -> PyResult<StepOutput> {
    const F: &str = "MetaStep";
    guarded(|| {
        let n = &spec.inner;
        let (p, b) = (tensors(&params, F, "params")?, tensors(&buffers, F, "buffers")?);
        let d = tensors(&domains, F, "domains")?;
        let last = domains.len() as i128 - 1;
        let splits = splits
            .iter()
            .enumerate()
            .map(|(i, (train, test))| {
                Ok(Split {
                    meta_train: ints(train, F, &format!("splits[{i}] meta-train"), 0, last)?,
                    meta_test: ints(test, F, &format!("splits[{i}] meta-test"), 0, last)?,
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let cfg = config.clone();
        without_gil(py, move || meta::meta_step(n, &p, &b, &d, &splits, &cfg, loss_scale))
    })
}

const D: StepConfig = StepConfig::DEFAULT;

#[pymethods]
impl StepConfig {
    /// MFR's hyperparameters (defaults: the library's choices; see ``mfr.meta``). Invalid values
    /// (NaN/inf, alpha < 0, gamma outside [0, 1], scale <= 0, negative weights) raise
    /// ``InvalidInputError`` listing every problem.
    #[new]
    #[pyo3(signature = (
        alpha = D.alpha, gamma = D.gamma, tau_p = D.tau_p, tau_n = D.tau_n, scale = D.scale,
        w_hp = D.w_hp, w_cls = D.w_cls, w_da = D.w_da, first_order = D.first_order,
        lean = D.lean, amp = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        alpha: f64,
        gamma: f64,
        tau_p: f64,
        tau_n: f64,
        scale: f64,
        w_hp: f64,
        w_cls: f64,
        w_da: f64,
        first_order: bool,
        lean: bool,
        amp: Option<&str>,
    ) -> PyResult<Self> {
        let amp = amp
            .map(|a| Amp::parse(a).map_err(|e| MfrError::InvalidInput(format!("MetaStepConfig: {e}"))))
            .transpose()?;
        let cfg = StepConfig { alpha, gamma, tau_p, tau_n, scale, w_hp, w_cls, w_da, first_order, lean, amp };
        cfg.validate()?;
        Ok(cfg)
    }

    fn __repr__(&self) -> String {
        format!("{self:?}").replacen("StepConfig", "MetaStepConfig", 1)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let c = self;
        let args = (
            c.alpha,
            c.gamma,
            c.tau_p,
            c.tau_n,
            c.scale,
            c.w_hp,
            c.w_cls,
            c.w_da,
            c.first_order,
            c.lean,
            c.amp.map(Amp::name),
        );
        Ok((py.get_type::<Self>(), args.into_pyobject(py)?))
    }

    /// Immutable: a copy is the object itself.
    fn __copy__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __deepcopy__<'py>(slf: PyRef<'py, Self>, _memo: &Bound<'py, PyAny>) -> PyRef<'py, Self> {
        slf
    }
}

#[pymethods]
impl StepOutput {
    fn __repr__(&self) -> String {
        format!("{self:?}").replacen("StepOutput", "MetaStepResult", 1)
    }
}

/// ``MetaStepConfig.amp`` reads as ``"bf16"`` / ``"fp16"`` (``None`` when off).
impl<'py> IntoPyObject<'py> for Amp {
    type Target = PyString;
    type Output = Bound<'py, PyString>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyString::new(py, self.name()))
    }
}
