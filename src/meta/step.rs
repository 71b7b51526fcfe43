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
//!
//! That shared schedule holds every split's second-order graph until the final backward (peak
//! memory ~2x the per-split reference's on a leave-one-out meta-batch). The lean schedule
//! (`StepConfig::lean`, the default) differentiates each split's term as soon as it is formed and
//! keeps a domain's forward at theta only for the next split that uses it, recomputing it otherwise
//! (without a second running-statistics update): same gradient up to rounding, peak memory near the
//! reference's, and a little slower than the shared schedule (benches/meta_step.py).

use tch::Tensor;

use super::autocast::{self, autocast, Amp, AutocastGuard};
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
    /// Memory-lean schedule: differentiate each split's objective term as soon as it is formed
    /// (the forwards at theta are retained, each computed when a split first needs it and freed
    /// after the last split that uses it) instead of holding every split's second-order graph
    /// for one final backward. Same gradient; peak memory close to the per-split reference's.
    pub lean: bool,
    /// Mixed precision: the backbone's forwards run under libtorch's autocast in bfloat16 or
    /// float16 (float32 parameters; embeddings, losses, gradients and theta' in float32).
    pub amp: Option<Amp>,
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
        lean: true,
        amp: None,
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
    /// float16 only: a loss or gradient overflowed, nothing was written to `.grad` and the running
    /// statistics are as before; lower the loss scale and go on (as torch's GradScaler does).
    pub skipped: bool,
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

/// A non-finite loss stops the step before anything is written into `.grad` (marked in `out`, so
/// that float16 can report it as an overflow instead of an error).
fn finite(name: &str, t: &Tensor, out: &mut StepOutput) -> Result<f64> {
    let v = t.f_double_value(&[])?;
    if !v.is_finite() {
        out.skipped = true;
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

/// The inputs of one meta-step, checked.
struct Step<'a> {
    net: &'a Backbone,
    params: &'a [Tensor],
    buffers: &'a [Tensor],
    domains: &'a [Tensor],
    cfg: &'a StepConfig,
    loss_scale: f64,
    device: tch::Device,
    /// `cfg.amp`, or the caller's autocast precision.
    amp: Option<Amp>,
}

/// Runs one meta-step and adds the combined gradient, times `loss_scale` (1 unless float16 is
/// scaling its losses, as `GradScaler.scale(loss).backward()` does), to the parameters' `.grad`.
pub fn meta_step(
    net: &Backbone,
    params: &[Tensor],
    buffers: &[Tensor],
    domains: &[Tensor],
    splits: &[Split],
    cfg: &StepConfig,
    loss_scale: f64,
) -> Result<StepOutput> {
    check(cfg, domains.len(), splits)?;
    if !(loss_scale.is_finite() && loss_scale > 0.0) {
        return Err(MfrError::invalid(F, format!("loss_scale must be a finite number > 0, got {loss_scale}")));
    }
    let (kind, device) = net.check_tensors(F, params, buffers)?;
    if cfg.amp.is_some() && kind != tch::Kind::Float {
        return Err(MfrError::invalid(F, format!("amp needs float32 parameters (the master weights), got {kind:?}")));
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
    // A caller's torch.autocast region counts as `amp` for the forwards; everything else in the
    // step (losses, inner update, gradients) runs in the parameters' precision regardless.
    let amp = cfg.amp.or(if kind == tch::Kind::Float { autocast::current(device) } else { None });
    let _full_precision = AutocastGuard::new(device, None);
    let step = Step { net, params, buffers, domains, cfg, loss_scale, device, amp };
    let fp16 = amp == Some(Amp::Fp16);
    // float16 may overflow and skip: the running statistics its forwards updated are put back.
    let saved = if fp16 {
        tch::no_grad(|| buffers.iter().map(|b| Ok(b.f_detach_copy()?)).collect::<Result<Vec<_>>>())?
    } else {
        vec![]
    };
    let mut out = StepOutput::default();
    match tch::with_grad(|| step.run(splits, &mut out)) {
        // float16's overflow: nothing written; the caller lowers the scale (GradScaler's rule).
        Err(_) if out.skipped && fp16 => {
            tch::no_grad(|| buffers.iter().zip(&saved).try_for_each(|(b, s)| b.shallow_clone().f_copy_(s)))?;
            Ok(StepOutput { skipped: true, ..Default::default() })
        }
        Err(e) => Err(e),
        Ok(()) => Ok(out),
    }
}

impl Step<'_> {
    /// The backbone's embeddings, in the parameters' precision even when autocast (this step's
    /// `amp`, or a caller's `torch.autocast` region, which the forwards follow as any op does)
    /// computed them in a lower one: the losses always run in full precision.
    fn forward(&self, params: &[Tensor], images: &Tensor, mode: BnMode) -> Result<Tensor> {
        let emb = autocast(self.device, self.amp, || self.net.forward(params, self.buffers, images, mode))?;
        let kind = params[0].kind();
        Ok(if emb.kind() != kind { emb.f_to_kind(kind)? } else { emb })
    }

    fn run(&self, splits: &[Split], out: &mut StepOutput) -> Result<()> {
        let mut theta = ThetaPasses::new(self.domains.len());
        let grads = if self.cfg.lean {
            Some(self.run_lean(splits, &mut theta, out)?)
        } else {
            self.run_shared(splits, &mut theta, out)?
        };
        if let Some(grads) = grads {
            self.write_grads(&grads, out)?;
        }
        self.report(theta, splits.len() as f64, out)
    }

    /// The shared schedule: every meta-train domain's forward at theta once, every split's term
    /// built on them, one backward of their mean. Under float16 the gradient comes back instead
    /// (checked before anything is written); otherwise the backward writes `.grad` itself.
    fn run_shared(
        &self,
        splits: &[Split],
        theta: &mut ThetaPasses,
        out: &mut StepOutput,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        for &d in splits.iter().flat_map(|s| &s.meta_train) {
            theta.ensure(self, d)?;
        }
        let terms = splits.iter().map(|s| self.split_term(s, &theta.passes, out)).collect::<Result<Vec<_>>>()?;
        let mut objective = mean(&terms)?;
        if self.loss_scale != 1.0 {
            objective = objective.f_mul_scalar(self.loss_scale)?;
        }
        // Its value is not J (L_T stands in as <theta', v>), but a NaN in v shows here too.
        finite("the meta objective's gradient", &objective, out)?;
        if self.amp != Some(Amp::Fp16) {
            objective.f_backward()?;
            return Ok(None);
        }
        let grads = Tensor::f_run_backward(&[&objective], self.params, false, false)?;
        Ok(Some(grads.into_iter().map(|g| g.defined().then_some(g)).collect()))
    }

    /// The lean schedule: split by split, the meta-train forwards it needs, its term, and its
    /// backward at once, so its second-order graph is freed before the next split builds its own.
    /// Returns the summed gradient (nothing is written to `.grad` until every split is finite).
    fn run_lean(&self, splits: &[Split], theta: &mut ThetaPasses, out: &mut StepOutput) -> Result<Vec<Option<Tensor>>> {
        let k = splits.len() as f64;
        let mut sum: Vec<Option<Tensor>> = (0..self.params.len()).map(|_| None).collect();
        for (i, s) in splits.iter().enumerate() {
            for &d in &s.meta_train {
                theta.ensure(self, d)?;
            }
            let term = self.split_term(s, &theta.passes, out)?.f_mul_scalar(self.loss_scale / k)?;
            finite("the meta objective's gradient", &term, out)?;
            // A domain's forward is kept only for the next split (retaining this split's graph
            // through its backward); one that skips a split is computed again when needed (a
            // forward is cheap next to a split's second-order backward). So at most one split's
            // meta-train domains are held, as in the per-split reference.
            let next = splits.get(i + 1).map_or(&[][..], |n| &n.meta_train[..]);
            let keep: Vec<usize> = s.meta_train.iter().copied().filter(|d| next.contains(d)).collect();
            let grads = Tensor::f_run_backward(&[&term], self.params, !keep.is_empty(), false)?;
            for (acc, g) in sum.iter_mut().zip(grads) {
                if g.defined() {
                    match acc {
                        Some(a) => drop(a.f_add_(&g)?),
                        None => *acc = Some(g),
                    }
                }
            }
            drop(term);
            for &d in &s.meta_train {
                if !keep.contains(&d) {
                    theta.passes[d] = None;
                }
            }
        }
        Ok(sum)
    }

    /// Adds a gradient computed apart to `.grad` the way a backward does, through
    /// `sum_i <p_i, g_i>`; under float16 each part is checked finite first (float16 may overflow
    /// in a backward even when the losses are finite).
    fn write_grads(&self, grads: &[Option<Tensor>], out: &mut StepOutput) -> Result<()> {
        if self.amp == Some(Amp::Fp16) {
            for g in grads.iter().flatten() {
                finite("the combined gradient", &g.f_sum(tch::Kind::Float)?, out)?;
            }
        }
        let mut write: Option<Tensor> = None;
        for (p, g) in self.params.iter().zip(grads) {
            if let Some(g) = g {
                let dot = p.f_mul(g)?.f_sum(p.kind())?;
                write = Some(match write {
                    Some(w) => w.f_add(&dot)?,
                    None => dot,
                });
            }
        }
        if let Some(w) = write {
            w.f_backward()?;
        }
        Ok(())
    }

    /// The step's report: mean L_S and L_T over the `k` splits, the objective, and per domain
    /// (its first forward at theta) the losses and hard-pair counts.
    fn report(&self, theta: ThetaPasses, k: f64, out: &mut StepOutput) -> Result<()> {
        let cfg = self.cfg;
        let ThetaPasses { passes, stats } = theta;
        drop(passes);
        out.loss_s /= k;
        out.loss_t /= k;
        out.objective = cfg.gamma * out.loss_s + (1.0 - cfg.gamma) * out.loss_t;
        let used: Vec<&DomainStats> = stats.iter().flatten().collect();
        let n = used.len() as f64;
        for st in &used {
            out.loss_hp += st.hp / n;
            out.loss_cls += st.cls / n;
            out.hard_positives += st.hard.0;
            out.hard_negatives += st.hard.1;
        }
        if cfg.w_da != 0.0 {
            let feats: Vec<Tensor> = used.iter().map(|st| st.emb.shallow_clone()).collect();
            out.loss_da = tch::no_grad(|| domain_alignment(&feats))?.f_double_value(&[])?;
        }
        Ok(())
    }

    /// Split k's objective term gamma L_S + (1 - gamma) <theta'_k, dL_T/dtheta'_k> (see the
    /// module docs); adds its L_S and L_T to `out`'s sums.
    fn split_term(&self, s: &Split, at_theta: &[Option<DomainPass>], out: &mut StepOutput) -> Result<Tensor> {
        let (cfg, params) = (self.cfg, self.params);
        let train: Vec<&DomainPass> =
            s.meta_train.iter().map(|&d| at_theta[d].as_ref().expect("computed before the split")).collect();
        let mut l_s = mean(&train.iter().map(|t| t.total.shallow_clone()).collect::<Vec<_>>())?;
        if cfg.w_da != 0.0 {
            let feats: Vec<Tensor> = train.iter().map(|t| t.emb.shallow_clone()).collect();
            l_s = l_s.f_add(&domain_alignment(&feats)?.f_mul_scalar(cfg.w_da)?)?;
        }
        // float16: grad(S L_S) / S, so that small gradients survive float16's backward.
        let scaled = if self.loss_scale != 1.0 { l_s.f_mul_scalar(self.loss_scale)? } else { l_s.shallow_clone() };
        let grads = Tensor::f_run_backward(&[&scaled], params, true, !cfg.first_order)?;
        let step = cfg.alpha / self.loss_scale;
        let adapted = params
            .iter()
            .zip(&grads)
            .map(|(p, g)| {
                if !g.defined() {
                    return Ok(p.shallow_clone()); // unused by L_S: theta' = theta
                }
                let g = if cfg.first_order { g.f_detach()? } else { g.shallow_clone() };
                Ok(p.f_sub(&g.f_mul_scalar(step)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut test_losses = Vec::with_capacity(s.meta_test.len());
        for &d in &s.meta_test {
            let emb = self.forward(&adapted, &self.domains[d], BnMode::TrainNoUpdate)?;
            test_losses.push(domain_pass(emb, cfg)?.total);
        }
        let l_t = mean(&test_losses)?;
        let (v_s, v_t) = (finite("L_S", &l_s, out)?, finite("L_T", &l_t, out)?);
        out.loss_s += v_s;
        out.loss_t += v_t;
        let mut term = l_s.f_mul_scalar(cfg.gamma)?;
        if cfg.gamma != 1.0 {
            term = term.f_add(&through_adapted(&l_t, &adapted)?.f_mul_scalar(1.0 - cfg.gamma)?)?;
        }
        Ok(term)
    }
}

/// What the step reports of a domain's pass at theta, without its graph.
struct DomainStats {
    hp: f64,
    cls: f64,
    hard: (i64, i64),
    emb: Tensor,
}

impl DomainStats {
    fn of(pass: &DomainPass) -> Result<DomainStats> {
        Ok(DomainStats {
            hp: pass.hp.f_double_value(&[])?,
            cls: pass.cls.f_double_value(&[])?,
            hard: pass.hard,
            emb: pass.emb.f_detach()?,
        })
    }
}
/// The meta-train domains' forwards at theta, in order of first use in both schedules: the first
/// forward of a domain updates BatchNorm's running statistics (the same sequence either way) and
/// gives the step's report; a recomputed forward (lean) uses the batch statistics without updating.
struct ThetaPasses {
    passes: Vec<Option<DomainPass>>,
    stats: Vec<Option<DomainStats>>,
}

impl ThetaPasses {
    fn new(n_domains: usize) -> Self {
        ThetaPasses { passes: (0..n_domains).map(|_| None).collect(), stats: (0..n_domains).map(|_| None).collect() }
    }

    /// Domain `d`'s forward at theta, computed unless held.
    fn ensure(&mut self, step: &Step<'_>, d: usize) -> Result<()> {
        if self.passes[d].is_none() {
            let mode = if self.stats[d].is_some() { BnMode::TrainNoUpdate } else { BnMode::TrainUpdate };
            let pass = domain_pass(step.forward(step.params, &step.domains[d], mode)?, step.cfg)?;
            if self.stats[d].is_none() {
                self.stats[d] = Some(DomainStats::of(&pass)?);
            }
            self.passes[d] = Some(pass);
        }
        Ok(())
    }
}
