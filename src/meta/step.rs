//! The MFR meta-gradient step.
//!
//! For a meta-batch with domains d (images `[gallery; probe]`, 2B rows, one BatchNorm batch each)
//! and splits k = (meta-train domains S_k, meta-test domains T_k):
//!
//! ```text
//! L_S^k(theta)  = mean_{d in S_k} (w_hp L_hp^d + w_cls L_cls^d) + w_da L_da(S_k)      at theta
//! theta'_k      = theta - alpha grad L_S^k(theta)          (graph kept; detached if first_order)
//! L_T^k(theta') = mean_{d in T_k} (w_hp L_hp^d + w_cls L_cls^d)                      at theta'_k
//! J             = 1/K sum_k [gamma L_S^k(theta) + (1 - gamma) L_T^k(theta'_k)]
//! ```
//!
//! One backward of J adds `1/K sum_k [gamma grad L_S^k + (1 - gamma) grad_theta L_T^k(theta'_k)]`
//! to every parameter's `.grad` (accumulating, as `loss.backward()` does), which is MFR's combined
//! gradient averaged over splits; up to scale it is MLDG's `L_S + beta L_T` with
//! `beta = (1 - gamma) / gamma`. Every domain's forward at theta happens once per step and is
//! shared by all splits that use it (this is what makes a leave-one-out meta-batch cheap), and so
//! is its BatchNorm running-statistics update; theta' passes never touch running statistics.
//! Each split's `L_T` is differentiated with respect to theta'_k as soon as it is computed, and J
//! holds `<theta'_k, dL_T/dtheta'_k>` in its place (same gradient), so theta' graphs do not wait
//! for the final backward.

use tch::Tensor;

use super::backbone::Backbone;
use super::layers::BnMode;
use super::losses::check_scale;
use super::losses::raw::{domain_alignment, hard_pair_attention, soft_classification};
use crate::error::{MfrError, Result};

/// The meta-step's hyperparameters. With the `python` feature this type *is*
/// `mfr.MetaStepConfig` (frozen, with generated getters; its constructor is in
/// `src/python/meta.rs`): the field list exists here and in the stub only.
#[cfg_attr(feature = "python", pyo3::pyclass(name = "MetaStepConfig", module = "mfr.meta", frozen, eq, get_all))]
#[derive(Clone, Debug, PartialEq)]
pub struct StepConfig {
    /// Inner step size: theta' = theta - alpha grad L_S.
    pub alpha: f64,
    /// Weight of L_S in the objective (L_T gets 1 - gamma), in [0, 1].
    pub gamma: f64,
    /// Hard-pair thresholds: positives below tau_p, negatives above tau_n (cosine).
    pub tau_p: f64,
    pub tau_n: f64,
    /// Soft-classification logit scale (> 0).
    pub scale: f64,
    /// Weights of the hard-pair, soft-classification and domain-alignment losses (>= 0).
    pub w_hp: f64,
    pub w_cls: f64,
    pub w_da: f64,
    /// Detach theta' from theta (no second-order terms).
    pub first_order: bool,
}

/// The losses' default thresholds and scale (this library's choices; the paper's code is not out).
pub const DEFAULT_TAU_P: f64 = 0.5;
pub const DEFAULT_TAU_N: f64 = 0.3;
pub const DEFAULT_SCALE: f64 = 32.0;

impl StepConfig {
    pub const DEFAULT: StepConfig = StepConfig {
        alpha: 0.01,
        gamma: 0.5,
        tau_p: DEFAULT_TAU_P,
        tau_n: DEFAULT_TAU_N,
        scale: DEFAULT_SCALE,
        w_hp: 1.0,
        w_cls: 1.0,
        w_da: 1.0,
        first_order: false,
    };

    /// Refuses values that would silently poison training: NaN/inf anywhere, a negative step size
    /// or loss weight, gamma outside [0, 1], a non-positive scale. Every problem in one message.
    pub fn validate(&self) -> Result<()> {
        let numbers = [
            ("alpha", self.alpha),
            ("gamma", self.gamma),
            ("tau_p", self.tau_p),
            ("tau_n", self.tau_n),
            ("scale", self.scale),
            ("w_hp", self.w_hp),
            ("w_cls", self.w_cls),
            ("w_da", self.w_da),
        ];
        let mut errors: Vec<String> = numbers
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(n, v)| format!("{n} must be a finite number, got {v}"))
            .collect();
        if errors.is_empty() {
            if self.alpha < 0.0 {
                errors.push(format!("alpha must be >= 0, got {}", self.alpha));
            }
            if !(0.0..=1.0).contains(&self.gamma) {
                errors.push(format!("gamma must lie in [0, 1], got {}", self.gamma));
            }
            if self.scale <= 0.0 {
                errors.push(format!("scale must be > 0, got {}", self.scale));
            }
            errors.extend(
                numbers[5..].iter().filter(|(_, v)| *v < 0.0).map(|(n, v)| format!("{n} must be >= 0, got {v}")),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(MfrError::InvalidInput(format!("MetaStepConfig: {}", errors.join("; "))))
        }
    }
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig::DEFAULT
    }
}

#[derive(Clone, Debug)]
pub struct Split {
    pub meta_train: Vec<usize>,
    pub meta_test: Vec<usize>,
}

/// What a meta-step reports. With the `python` feature this type is `mfr.meta.MetaStepResult`
/// (frozen, generated getters).
#[cfg_attr(feature = "python", pyo3::pyclass(name = "MetaStepResult", module = "mfr.meta", frozen, get_all))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    /// Mean over splits of L_S^k(theta), of L_T^k(theta'_k) and of J.
    pub loss_s: f64,
    pub loss_t: f64,
    pub objective: f64,
    /// Mean over domains (at theta) of each loss term.
    pub loss_hp: f64,
    pub loss_cls: f64,
    pub loss_da: f64,
    /// Hard pairs found at theta, summed over domains.
    pub hard_positives: i64,
    pub hard_negatives: i64,
}

const F: &str = "MetaStep";

fn check(cfg: &StepConfig, n_domains: usize, splits: &[Split]) -> Result<()> {
    cfg.validate()?;
    check_scale(cfg.scale)?;
    if splits.is_empty() {
        return Err(MfrError::invalid(F, "needs at least one split"));
    }
    for (k, s) in splits.iter().enumerate() {
        if s.meta_train.is_empty() || s.meta_test.is_empty() {
            return Err(MfrError::invalid(F, format!("split {k} needs meta-train and meta-test domains")));
        }
        if let Some(&d) = s.meta_train.iter().chain(&s.meta_test).find(|&&d| d >= n_domains) {
            return Err(MfrError::invalid(
                F,
                format!("split {k} names domain {d}, but the meta-batch has {n_domains} domains"),
            ));
        }
        if s.meta_train.iter().any(|d| s.meta_test.contains(d)) {
            return Err(MfrError::invalid(F, format!("split {k} uses a domain for both meta-train and meta-test")));
        }
    }
    Ok(())
}

/// A non-finite loss stops the step before anything is written into `.grad`.
fn finite(name: &str, t: &Tensor) -> Result<f64> {
    let v = t.f_double_value(&[])?;
    if !v.is_finite() {
        return Err(MfrError::invalid(
            F,
            format!("{name} is {v}; no gradient was written (inputs, learning rate or alpha?)"),
        ));
    }
    Ok(v)
}

/// One domain's pass: the weighted loss, its parts, mining counts and the embeddings.
struct DomainPass {
    total: Tensor,
    hp: Tensor,
    cls: Tensor,
    hard: (i64, i64),
    emb: Tensor,
}

fn domain_pass(emb: Tensor, cfg: &StepConfig) -> Result<DomainPass> {
    let b = emb.size()[0] / 2;
    let (g, p) = (emb.f_narrow(0, 0, b)?, emb.f_narrow(0, b, b)?);
    let (hp, stats) = hard_pair_attention(&g, &p, cfg.tau_p, cfg.tau_n)?;
    let cls = soft_classification(&g, &p, cfg.scale)?;
    let total = hp.f_mul_scalar(cfg.w_hp)?.f_add(&cls.f_mul_scalar(cfg.w_cls)?)?;
    Ok(DomainPass { total, hp, cls, hard: (stats.hard_positives, stats.hard_negatives), emb })
}

fn mean(ts: &[Tensor]) -> Result<Tensor> {
    let refs: Vec<&Tensor> = ts.iter().collect();
    Ok(Tensor::f_stack(&refs, 0)?.f_mean(ts[0].kind())?)
}

/// A stand-in for `l_t` in the objective with the same gradient with respect to theta and a much
/// smaller graph: `<theta', v>` with `v = dL_T/dtheta'` computed now. The chain rule gives
/// `(dtheta'/dtheta)^T v` either way, and this backward frees the split's theta' forward graph at
/// once instead of holding it until the final backward (measured: a fifth of the step's peak memory).
fn through_adapted(l_t: &Tensor, adapted: &[Tensor]) -> Result<Tensor> {
    let v = Tensor::f_run_backward(&[l_t], adapted, false, false)?;
    let mut total: Option<Tensor> = None;
    for (a, v) in adapted.iter().zip(&v) {
        if v.defined() {
            let dot = a.f_mul(v)?.f_sum(a.kind())?;
            total = Some(match total {
                Some(t) => t.f_add(&dot)?,
                None => dot,
            });
        }
    }
    // L_T reaches the parameters through theta', so v is defined for some of them.
    total.ok_or_else(|| MfrError::internal("L_T does not depend on the adapted parameters"))
}

/// Runs one meta-step and adds the combined gradient to the parameters' `.grad`.
pub fn meta_step(
    net: &Backbone,
    params: &[Tensor],
    buffers: &[Tensor],
    domains: &[Tensor],
    splits: &[Split],
    cfg: &StepConfig,
) -> Result<StepOutput> {
    check(cfg, domains.len(), splits)?;
    let (kind, device) = net.check_tensors(F, params, buffers)?;
    if device == tch::Device::Cpu {
        crate::heap::reuse_freed_heap();
    }
    for (d, imgs) in domains.iter().enumerate() {
        net.check_images(F, imgs, kind, device)?;
        let n = imgs.size()[0];
        if n % 2 != 0 || n < 4 {
            return Err(MfrError::invalid(
                F,
                format!("domain {d} must hold [gallery; probe] with B >= 2 identities each (an even count >= 4), got {n} images"),
            ));
        }
    }
    if let Some(i) = params.iter().position(|p| !p.requires_grad()) {
        return Err(MfrError::invalid(
            F,
            format!("parameter {i} does not require grad (is the step inside torch.no_grad()?)"),
        ));
    }
    tch::with_grad(|| {
        // Forward at theta once per domain that any split trains on.
        let mut at_theta: Vec<Option<DomainPass>> = (0..domains.len()).map(|_| None).collect();
        for s in splits {
            for &d in &s.meta_train {
                if at_theta[d].is_none() {
                    let emb = net.forward(params, buffers, &domains[d], BnMode::TrainUpdate)?;
                    at_theta[d] = Some(domain_pass(emb, cfg)?);
                }
            }
        }
        let mut out = StepOutput::default();
        let mut objective_terms = Vec::with_capacity(splits.len());
        for s in splits {
            let train: Vec<&DomainPass> =
                s.meta_train.iter().map(|&d| at_theta[d].as_ref().expect("computed above")).collect();
            let mut l_s = mean(&train.iter().map(|t| t.total.shallow_clone()).collect::<Vec<_>>())?;
            if cfg.w_da != 0.0 {
                let feats: Vec<Tensor> = train.iter().map(|t| t.emb.shallow_clone()).collect();
                l_s = l_s.f_add(&domain_alignment(&feats)?.f_mul_scalar(cfg.w_da)?)?;
            }
            let grads = Tensor::f_run_backward(&[&l_s], params, true, !cfg.first_order)?;
            let adapted = params
                .iter()
                .zip(&grads)
                .map(|(p, g)| {
                    if !g.defined() {
                        return Ok(p.shallow_clone()); // unused by L_S: theta' = theta
                    }
                    let g = if cfg.first_order { g.f_detach()? } else { g.shallow_clone() };
                    Ok(p.f_sub(&g.f_mul_scalar(cfg.alpha)?)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut test_losses = Vec::with_capacity(s.meta_test.len());
            for &d in &s.meta_test {
                let emb = net.forward(&adapted, buffers, &domains[d], BnMode::TrainNoUpdate)?;
                test_losses.push(domain_pass(emb, cfg)?.total);
            }
            let l_t = mean(&test_losses)?;
            out.loss_s += finite("L_S", &l_s)?;
            out.loss_t += finite("L_T", &l_t)?;
            let mut term = l_s.f_mul_scalar(cfg.gamma)?;
            if cfg.gamma != 1.0 {
                term = term.f_add(&through_adapted(&l_t, &adapted)?.f_mul_scalar(1.0 - cfg.gamma)?)?;
            }
            objective_terms.push(term);
        }
        let objective = mean(&objective_terms)?;
        // Its value is not J (L_T stands in as <theta', v>), but a NaN in v shows here too.
        finite("the meta objective's gradient", &objective)?;
        objective.f_backward()?;
        let k = splits.len() as f64;
        out.loss_s /= k;
        out.loss_t /= k;
        out.objective = cfg.gamma * out.loss_s + (1.0 - cfg.gamma) * out.loss_t;
        let used: Vec<_> = at_theta.iter().flatten().collect();
        let n = used.len() as f64;
        for pass in &used {
            out.loss_hp += pass.hp.f_double_value(&[])? / n;
            out.loss_cls += pass.cls.f_double_value(&[])? / n;
            out.hard_positives += pass.hard.0;
            out.hard_negatives += pass.hard.1;
        }
        if cfg.w_da != 0.0 {
            let feats: Vec<Tensor> = used.iter().map(|t| t.emb.shallow_clone()).collect();
            out.loss_da = tch::no_grad(|| domain_alignment(&feats))?.f_double_value(&[])?;
        }
        Ok(out)
    })
}
