//! Cosine similarity between embeddings: row-wise on paired tensors (stays on the tensors'
//! device) and over index pairs into one embedding matrix (float64 scores for the metrics).

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::{MfrError, Result};
use crate::tensor_check::{all_finite, host_slice, tensor_finite, Arg};
use crate::threads;

/// Norms below this count as zero: a zero embedding has cosine 0 with everything.
const NORM_EPS: f64 = 1e-12;

/// Row-wise cosine similarity of two `N x D` float32 tensors on the same device.
/// Returns a float32 tensor of length `N` on that device.
pub fn cosine_scores(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    const F: &str = "cosine_scores";
    let (aa, ab) = (Arg::new(F, "a", a), Arg::new(F, "b", b));
    aa.usable_device()?.same_device(&ab)?.kind(Kind::Float)?.dims(2)?.contiguous()?;
    ab.kind(Kind::Float)?.dims(2)?.contiguous()?;
    if a.size() != b.size() {
        return Err(MfrError::invalid(
            F,
            format!("arguments 'a' and 'b' must have the same shape, got {:?} and {:?}", a.size(), b.size()),
        ));
    }
    // As pair_scores and identification: a non-finite embedding is an error, not a NaN score.
    tensor_finite(F, "a", a)?;
    tensor_finite(F, "b", b)?;
    let dot = a.f_mul(b)?.f_sum_dim_intlist(1, false, Kind::Float)?;
    let na = a.f_norm_scalaropt_dim(2, 1, false)?.f_clamp_min(NORM_EPS)?;
    let nb = b.f_norm_scalaropt_dim(2, 1, false)?.f_clamp_min(NORM_EPS)?;
    Ok(dot.f_div(&na.f_mul(&nb)?)?)
}

/// Cosine similarity of `embeddings[i]` and `embeddings[j]` for each `(i, j)` in `pairs`,
/// accumulated in float64. `embeddings` is `N x D` float32 on any device.
pub fn pair_scores(embeddings: &Tensor, pairs: &[[i64; 2]]) -> Result<Vec<f64>> {
    const F: &str = "pair_scores";
    let arg = Arg::new(F, "embeddings", embeddings);
    arg.usable_device()?.kind(Kind::Float)?.dims(2)?.contiguous()?.non_empty()?;
    let size = embeddings.size();
    let (n, d) = (size[0], size[1] as usize);
    if let Some((k, bad)) = pairs.iter().enumerate().find(|(_, p)| p[0] < 0 || p[0] >= n || p[1] < 0 || p[1] >= n) {
        return Err(MfrError::invalid(
            F,
            format!("argument 'pairs' must index rows 0..{n} of 'embeddings', got {bad:?} at row {k}"),
        ));
    }
    match embeddings.device() {
        Device::Cpu => {
            let data = host_slice::<f32>(F, "embeddings", embeddings)?;
            pair_scores_cpu(data, d, pairs)
        }
        _ => pair_scores_device(embeddings, pairs),
    }
}

fn pair_scores_cpu(data: &[f32], d: usize, pairs: &[[i64; 2]]) -> Result<Vec<f64>> {
    all_finite("pair_scores", "embeddings", data)?;
    threads::install(|| {
        let norms: Vec<f64> = data
            .par_chunks(d.max(1))
            .map(|row| row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt().max(NORM_EPS))
            .collect();
        pairs
            .par_iter()
            .map(|&[i, j]| {
                let (i, j) = (i as usize, j as usize);
                let (ri, rj) = (&data[i * d..(i + 1) * d], &data[j * d..(j + 1) * d]);
                let dot: f64 = ri.iter().zip(rj).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                dot / (norms[i] * norms[j])
            })
            .collect()
    })
}

fn pair_scores_device(embeddings: &Tensor, pairs: &[[i64; 2]]) -> Result<Vec<f64>> {
    let device = embeddings.device();
    tensor_finite("pair_scores", "embeddings", embeddings)?;
    let flat: Vec<i64> = pairs.iter().flatten().copied().collect();
    let index = Tensor::f_from_slice(&flat)?.f_view([pairs.len() as i64, 2])?.f_to_device(device)?;
    let e = embeddings.f_to_kind(Kind::Double)?;
    let e = e.f_div(&e.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(NORM_EPS)?)?;
    let gi = e.f_index_select(0, &index.f_select(1, 0)?)?;
    let gj = e.f_index_select(0, &index.f_select(1, 1)?)?;
    let scores = gi.f_mul(&gj)?.f_sum_dim_intlist(1, false, Kind::Double)?.f_to_device(Device::Cpu)?;
    Ok(Vec::<f64>::try_from(&scores)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb() -> Tensor {
        Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0, 3.0, 3.0, 0.0, 0.0]).view([4, 2])
    }

    #[test]
    fn pair_scores_match_definition() {
        let s = pair_scores(&emb(), &[[0, 1], [0, 2], [2, 2], [3, 0]]).unwrap();
        let expect = [0.0, 1.0 / 2f64.sqrt(), 1.0, 0.0];
        for (a, b) in s.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{s:?}");
        }
    }

    #[test]
    fn device_path_agrees_with_cpu_path() {
        let e = Tensor::randn([50, 16], (Kind::Float, Device::Cpu));
        let pairs: Vec<[i64; 2]> = (0..50).map(|i| [i, (i * 7 + 3) % 50]).collect();
        let cpu = pair_scores(&e, &pairs).unwrap();
        let dev = pair_scores_device(&e, &pairs).unwrap();
        for (a, b) in cpu.iter().zip(&dev) {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn pair_scores_reject_bad_input() {
        let e = pair_scores(&emb(), &[[0, 4]]).unwrap_err();
        assert!(e.to_string().contains("got [0, 4] at row 0"), "{e}");
        let nan = Tensor::from_slice(&[1.0f32, f32::NAN]).view([1, 2]);
        assert!(pair_scores(&nan, &[[0, 0]]).unwrap_err().to_string().contains("index 1"));
        let wrong = Tensor::zeros([4, 2], (Kind::Double, Device::Cpu));
        assert!(matches!(pair_scores(&wrong, &[[0, 0]]), Err(MfrError::InvalidInput(_))));
        assert!(pair_scores(&emb(), &[]).unwrap().is_empty());
    }

    #[test]
    fn cosine_scores_rowwise() {
        let a = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0]).view([2, 2]);
        let b = Tensor::from_slice(&[0.0f32, 5.0, 2.0, 2.0]).view([2, 2]);
        let s = Vec::<f32>::try_from(&cosine_scores(&a, &b).unwrap()).unwrap();
        assert!((s[0] - 0.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6);
        let c = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        assert!(cosine_scores(&a, &c).unwrap_err().to_string().contains("same shape"));
    }
}
