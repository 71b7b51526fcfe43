//! Functional backbones: the forward pass takes its parameters explicitly, so the meta-step can
//! run it at theta and at theta' = theta - alpha g with the same code.
//!
//! `SmallCnn` (CPU-friendly): four blocks of conv3x3 -> BatchNorm -> PReLU -> max-pool 2x2
//! (channels w, 2w, 4w, 8w), then flatten -> linear -> BatchNorm1d -> embedding. Input sides must be
//! multiples of 16.
//!
//! BatchNorm policy: every training pass normalizes with the statistics of its own batch (the meta-
//! step feeds one domain per pass, so statistics are per domain); running statistics are updated
//! only when the caller passes them (the passes at theta), never by theta' passes; eval mode uses
//! the running statistics.

use tch::{Kind, Tensor};

use crate::error::{MfrError, Result};

pub const BN_MOMENTUM: f64 = 0.1;
pub const BN_EPS: f64 = 1e-5;

/// How a parameter is initialised (done on the Python side, with torch's seeded RNG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Kaiming-normal (fan_out, ReLU gain), as torchvision ResNets.
    Conv,
    /// Default `nn.Linear` init.
    Linear,
    Ones,
    Zeros,
    /// PReLU slope 0.25.
    Prelu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
}

#[derive(Clone, Debug)]
pub struct SmallCnn {
    pub in_channels: i64,
    pub input_size: i64,
    pub width: i64,
    pub embedding_dim: i64,
}

/// Whether a pass normalizes with batch statistics (and updates running ones) or uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// Batch statistics; running statistics updated (passes at theta).
    TrainUpdate,
    /// Batch statistics; running statistics untouched (theta' passes).
    TrainNoUpdate,
    /// Running statistics.
    Eval,
}

impl SmallCnn {
    pub fn new(in_channels: i64, input_size: i64, width: i64, embedding_dim: i64) -> Result<Self> {
        const F: &str = "Backbone('small_cnn')";
        if in_channels != 1 && in_channels != 3 {
            return Err(MfrError::invalid(F, format!("in_channels must be 1 or 3, got {in_channels}")));
        }
        if input_size < 16 || input_size % 16 != 0 {
            return Err(MfrError::invalid(
                F,
                format!("input_size must be a positive multiple of 16, got {input_size}"),
            ));
        }
        if width < 1 || embedding_dim < 1 {
            return Err(MfrError::invalid(
                F,
                format!("width and embedding_dim must be >= 1, got {width} and {embedding_dim}"),
            ));
        }
        Ok(SmallCnn { in_channels, input_size, width, embedding_dim })
    }

    fn channels(&self) -> [i64; 5] {
        let w = self.width;
        [self.in_channels, w, 2 * w, 4 * w, 8 * w]
    }

    /// Parameters in their fixed order (also the state_dict order).
    pub fn parameters(&self) -> Vec<TensorSpec> {
        let spec = |name: String, shape: Vec<i64>, init| TensorSpec { name, shape, init };
        let c = self.channels();
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(spec(format!("block{i}.conv.weight"), vec![c[i + 1], c[i], 3, 3], Init::Conv));
            out.push(spec(format!("block{i}.bn.weight"), vec![c[i + 1]], Init::Ones));
            out.push(spec(format!("block{i}.bn.bias"), vec![c[i + 1]], Init::Zeros));
            out.push(spec(format!("block{i}.prelu.weight"), vec![c[i + 1]], Init::Prelu));
        }
        let side = self.input_size / 16;
        out.push(spec("embed.weight".into(), vec![self.embedding_dim, c[4] * side * side], Init::Linear));
        out.push(spec("embed.bias".into(), vec![self.embedding_dim], Init::Linear));
        out.push(spec("embed_bn.weight".into(), vec![self.embedding_dim], Init::Ones));
        out.push(spec("embed_bn.bias".into(), vec![self.embedding_dim], Init::Zeros));
        out
    }

    /// BatchNorm running statistics (mean, var per BN layer), in order.
    pub fn buffers(&self) -> Vec<TensorSpec> {
        let c = self.channels();
        let mut out = Vec::new();
        let mut bn = |prefix: String, n: i64| {
            out.push(TensorSpec { name: format!("{prefix}.running_mean"), shape: vec![n], init: Init::Zeros });
            out.push(TensorSpec { name: format!("{prefix}.running_var"), shape: vec![n], init: Init::Ones });
        };
        for i in 0..4 {
            bn(format!("block{i}.bn"), c[i + 1]);
        }
        bn("embed_bn".into(), self.embedding_dim);
        out
    }

    pub fn check_inputs(&self, func: &str, params: &[Tensor], buffers: &[Tensor], images: &Tensor) -> Result<()> {
        let (ps, bs) = (self.parameters(), self.buffers());
        if params.len() != ps.len() || buffers.len() != bs.len() {
            return Err(MfrError::invalid(
                func,
                format!(
                    "small_cnn needs {} parameters and {} buffers, got {} and {}",
                    ps.len(),
                    bs.len(),
                    params.len(),
                    buffers.len()
                ),
            ));
        }
        for (t, s) in params.iter().zip(&ps).chain(buffers.iter().zip(&bs)) {
            if t.size() != s.shape {
                return Err(MfrError::invalid(
                    func,
                    format!("{} must have shape {:?}, got {:?}", s.name, s.shape, t.size()),
                ));
            }
        }
        let size = images.size();
        let expect = [self.in_channels, self.input_size, self.input_size];
        if size.len() != 4 || size[1..] != expect {
            return Err(MfrError::invalid(
                func,
                format!("images must be (N, {}, {}, {}), got {size:?}", expect[0], expect[1], expect[2]),
            ));
        }
        let kind = images.f_kind()?;
        if kind != params[0].f_kind()? {
            return Err(MfrError::invalid(
                func,
                format!(
                    "images must have the parameters' dtype {}, got {}",
                    crate::tensor_check::kind_name(params[0].kind()),
                    crate::tensor_check::kind_name(kind)
                ),
            ));
        }
        if images.device() != params[0].device() {
            return Err(MfrError::device(
                func,
                format!(
                    "images are on {} but the parameters on {}",
                    crate::tensor_check::device_name(images.device()),
                    crate::tensor_check::device_name(params[0].device())
                ),
            ));
        }
        Ok(())
    }

    /// Embeddings (N, embedding_dim) of `images` (N, C, S, S) with the given parameters.
    pub fn forward(&self, params: &[Tensor], buffers: &[Tensor], images: &Tensor, mode: BnMode) -> Result<Tensor> {
        let training = mode != BnMode::Eval;
        let running = |k: usize| -> (Option<&Tensor>, Option<&Tensor>) {
            if mode == BnMode::TrainNoUpdate {
                (None, None)
            } else {
                (Some(&buffers[2 * k]), Some(&buffers[2 * k + 1]))
            }
        };
        let mut x = images.shallow_clone();
        for i in 0..4 {
            let p = &params[4 * i..4 * i + 4];
            x = x.f_conv2d::<&Tensor>(&p[0], None, [1, 1], [1, 1], [1, 1], 1)?;
            let (rm, rv) = running(i);
            x = x.f_batch_norm(Some(&p[1]), Some(&p[2]), rm, rv, training, BN_MOMENTUM, BN_EPS, false)?;
            x = prelu(&x, &p[3])?;
            x = x.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
        }
        let p = &params[16..20];
        x = x.f_flatten(1, -1)?.f_linear(&p[0], Some(&p[1]))?;
        let (rm, rv) = running(4);
        Ok(x.f_batch_norm(Some(&p[2]), Some(&p[3]), rm, rv, training, BN_MOMENTUM, BN_EPS, false)?)
    }
}

/// PReLU as `relu(x) - a * relu(-x)` (equal values; a per-channel slope `a`). Its second-order
/// backward is built from ReLU masks, several times cheaper than that of `aten::prelu`, which
/// dominates the meta-step's double backward otherwise.
fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    let a = slope.f_view([1, -1, 1, 1])?;
    Ok(x.f_relu()?.f_sub(&a.f_mul(&x.f_neg()?.f_relu()?)?)?)
}

/// The element type every parameter must share.
pub fn common_kind(params: &[Tensor]) -> Result<Kind> {
    let k = params.first().map(|p| p.kind()).ok_or_else(|| MfrError::invalid("MetaStep", "no parameters"))?;
    if params.iter().any(|p| p.kind() != k) {
        return Err(MfrError::invalid("MetaStep", "all parameters must share one dtype"));
    }
    Ok(k)
}
