//! Bindings of `crate::data` and `crate::sampler`: `FaceIndex` and the sampler core.

use std::ffi::{CString, OsString};
use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};
use pyo3_tch::PyTensor;

use super::errors::{data_warning, guarded, without_gil};
use super::int_arg::{ints, Int, MAX_COUNT};
use crate::data::index::shown;
use crate::data::{unpack_insightface, DecodeOptions, FaceIndex, ImageSource, RecordFile};
use crate::error::MfrError;
use crate::sampler::{DomainSampler, SamplerConfig, SplitMode};
use rayon::prelude::*;

/// Largest decoded image side (pixels).
const MAX_SIDE: i128 = 16384;
/// Most ranks a sampler may be split over: far beyond any cluster, small enough that the padded
/// epoch (one batch per rank at least) stays a sane size.
const MAX_WORLD_SIZE: i128 = 1 << 20;

type Int64Array<'py> = Bound<'py, PyArray1<i64>>;
/// (paths, domain names, identity names), one entry per image
type IndexArrays = (Vec<OsString>, Vec<OsString>, Vec<OsString>);
/// (labels, id, id2, image bytes)
type InsightfaceTuple<'py> = (Bound<'py, PyArray1<f32>>, u64, u64, Bound<'py, PyBytes>);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFaceIndex>()?;
    m.add_class::<PyDomainSamplerCore>()?;
    m.add_class::<PyEpochBatches>()?;
    m.add_function(wrap_pyfunction!(decode_images, m)?)?;
    m.add_function(wrap_pyfunction!(convert_images, m)?)?;
    m.add_class::<PyRecordFile>()?;
    m.add_function(wrap_pyfunction!(write_images, m)?)?;
    Ok(())
}

/// Every image of a multi-domain face dataset with its domain and identity.
///
/// Identities are scoped by domain (``001`` in two domains are two people). Domains are numbered
/// by sorted name, identities by first appearance (for a folder: its sorted walk), so the same
/// input always gives the same numbering.
#[pyclass(name = "FaceIndex", module = "mfr.data", frozen)]
#[derive(Clone)]
pub(crate) struct PyFaceIndex {
    pub(crate) inner: FaceIndex,
}

/// A domain or identity label: a string as the OS would name it (surrogate-escaped bytes of a
/// non-UTF-8 folder name come back as those bytes), anything else (numbers) as its str().
fn label(ob: &Bound<'_, PyAny>) -> PyResult<OsString> {
    match ob.extract::<OsString>() {
        Ok(name) => Ok(name),
        Err(_) => Ok(ob.str()?.to_string().into()),
    }
}

impl PyFaceIndex {
    fn domain_number(&self, domain: &Bound<'_, PyAny>, func: &str) -> PyResult<usize> {
        let name: OsString = match domain.extract::<Int>()? {
            Int::NotAnInteger(_) => domain.extract().map_err(|_| {
                MfrError::invalid(
                    func,
                    format!("argument 'domain' must be a domain number or name, got {}", domain.get_type()),
                )
            })?,
            number => {
                let last = self.inner.n_domains() as i128 - 1;
                return Ok(number.get(func, "domain", 0, last.max(0))?);
            }
        };
        if let Some(d) = self.inner.domain_names.iter().position(|n| *n == name) {
            return Ok(d);
        }
        // A number given as text (a command line's "--sources 0,2") when no domain has that name.
        let digits = name.to_str().filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
        if let Some(d) = digits.and_then(|t| t.parse::<usize>().ok()).filter(|&d| d < self.inner.n_domains()) {
            return Ok(d);
        }
        let known: Vec<String> = self.inner.domain_names.iter().map(|n| format!("'{}'", shown(n))).collect();
        Err(MfrError::invalid(
            func,
            format!("domain '{}' is not in the data; its domains are {}", shown(&name), known.join(", ")),
        )
        .into())
    }
}

#[pymethods]
impl PyFaceIndex {
    /// Index of a folder laid out ``<root>/<domain>/<identity>/<image>`` (non-image files ignored).
    #[staticmethod]
    fn from_folder(py: Python<'_>, root: PathBuf) -> PyResult<Self> {
        guarded(|| {
            let (inner, dangling) = without_gil(py, move || FaceIndex::from_folder(&root))?;
            if !dangling.is_empty() {
                let shown = dangling.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                let more = if dangling.len() > 5 { format!(" and {} more", dangling.len() - 5) } else { String::new() };
                let message = format!(
                    "FaceIndex.from_folder: skipped {} symbolic link(s) to nothing: {shown}{more}",
                    dangling.len()
                );
                PyErr::warn(py, data_warning(py)?.as_any(), &CString::new(message)?, 1)?;
            }
            Ok(PyFaceIndex { inner })
        })
    }

    /// Index of a list file with one ``path domain identity`` per line; relative paths are joined
    /// to ``root`` when given.
    #[staticmethod]
    #[pyo3(signature = (path, root = None))]
    fn from_list(py: Python<'_>, path: PathBuf, root: Option<PathBuf>) -> PyResult<Self> {
        guarded(|| {
            without_gil(py, move || FaceIndex::from_list(&path, root.as_deref())).map(|inner| PyFaceIndex { inner })
        })
    }

    /// Index from parallel sequences; domain and identity labels may be strings or numbers.
    #[staticmethod]
    fn from_arrays(
        paths: Vec<OsString>,
        domains: Vec<Bound<'_, PyAny>>,
        identities: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const F: &str = "FaceIndex.from_arrays";
        guarded(|| {
            if paths.len() != domains.len() || paths.len() != identities.len() {
                return Err(MfrError::invalid(
                    F,
                    format!(
                        "paths, domains and identities must have the same length, got {}, {} and {}",
                        paths.len(),
                        domains.len(),
                        identities.len()
                    ),
                )
                .into());
            }
            let mut triples = Vec::with_capacity(paths.len());
            for ((p, d), i) in paths.into_iter().zip(&domains).zip(&identities) {
                triples.push((p, label(d)?, label(i)?));
            }
            Ok(PyFaceIndex { inner: FaceIndex::from_triples(F, triples)? })
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The number of a domain given by number, name, or number as text (when no domain has that
    /// name); anything else is an ``InvalidInputError`` listing the domains.
    #[pyo3(name = "domain_number")]
    fn py_domain_number(&self, domain: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.domain_number(domain, "FaceIndex.domain_number")
    }

    /// Pickling (DataLoader workers started with spawn, multiprocessing): rebuilt from arrays,
    /// which reproduces the same numbering.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, IndexArrays)> {
        let ctor = py.get_type::<PyFaceIndex>().getattr("from_arrays")?;
        let i = &self.inner;
        let domains = i.domains.iter().map(|&d| i.domain_names[d as usize].clone()).collect();
        let identities = i.identities.iter().map(|&id| i.identity_names[id as usize].clone()).collect();
        Ok((ctor, (i.paths.clone(), domains, identities)))
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }

    fn __repr__(&self) -> String {
        format!(
            "FaceIndex({} images, {} identities, {} domains: {})",
            self.inner.len(),
            self.inner.n_identities(),
            self.inner.n_domains(),
            self.inner.domain_names.iter().map(|n| shown(n)).collect::<Vec<_>>().join(", ")
        )
    }

    /// Image paths, in index order.
    #[getter]
    fn paths(&self) -> Vec<OsString> {
        self.inner.paths.clone()
    }

    /// Domain number of each image (int64).
    #[getter]
    fn domains<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner.domains.iter().map(|&d| i64::from(d)).collect::<Vec<_>>().into_pyarray(py)
    }

    /// Identity number of each image (int64, unique across domains).
    #[getter]
    fn identities<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner.identities.iter().map(|&d| i64::from(d)).collect::<Vec<_>>().into_pyarray(py)
    }

    /// Domain number of each identity (int64).
    #[getter]
    fn identity_domains<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner.identity_domains.iter().map(|&d| i64::from(d)).collect::<Vec<_>>().into_pyarray(py)
    }

    #[getter]
    fn domain_names(&self) -> Vec<OsString> {
        self.inner.domain_names.clone()
    }

    /// Identity labels (as given, without their domain).
    #[getter]
    fn identity_names(&self) -> Vec<OsString> {
        self.inner.identity_names.clone()
    }

    #[getter]
    fn n_domains(&self) -> usize {
        self.inner.n_domains()
    }

    #[getter]
    fn n_identities(&self) -> usize {
        self.inner.n_identities()
    }

    /// Per domain: identities, images, min/mean/max images per identity.
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for s in self.inner.summary() {
            let d = PyDict::new(py);
            d.set_item("identities", s.identities)?;
            d.set_item("images", s.images)?;
            d.set_item("min_images_per_identity", s.min_images_per_identity)?;
            d.set_item("mean_images_per_identity", s.images as f64 / s.identities.max(1) as f64)?;
            d.set_item("max_images_per_identity", s.max_images_per_identity)?;
            out.set_item(s.name, d)?;
        }
        Ok(out)
    }

    /// A new index without the identities that have fewer than ``min_images`` images.
    #[pyo3(signature = (min_images = Int::new(2)), text_signature = "($self, min_images=2)")]
    fn filter(&self, min_images: Int) -> PyResult<Self> {
        let min_images: usize = min_images.get("FaceIndex.filter", "min_images", 0, MAX_COUNT)?;
        guarded(|| Ok(PyFaceIndex { inner: self.inner.filter_min_images(min_images)? }))
    }

    /// Disjoint ``(train, test)`` indexes: in every domain, ``round(test_fraction * n)`` seeded
    /// identities go to test.
    #[pyo3(signature = (test_fraction = 0.2, seed = Int::new(0)), text_signature = "($self, test_fraction=0.2, seed=0)")]
    fn split_identities(&self, test_fraction: f64, seed: Int) -> PyResult<(Self, Self)> {
        let seed = seed.any_u64("FaceIndex.split_identities", "seed")?;
        guarded(|| {
            let (a, b) = self.inner.split_identities(test_fraction, seed)?;
            Ok((PyFaceIndex { inner: a }, PyFaceIndex { inner: b }))
        })
    }

    /// Every genuine pair of ``domain`` (number or name) plus ``n_impostors`` distinct seeded
    /// impostor pairs: ``(pairs (M, 2) int64 image indices, labels (M,) bool)``.
    #[pyo3(
        signature = (domain, n_impostors = Int::new(10_000), seed = Int::new(0)),
        text_signature = "($self, domain, n_impostors=10000, seed=0)"
    )]
    fn verification_pairs<'py>(
        &self,
        py: Python<'py>,
        domain: &Bound<'py, PyAny>,
        n_impostors: Int,
        seed: Int,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<bool>>)> {
        const F: &str = "FaceIndex.verification_pairs";
        let n_impostors: usize = n_impostors.get(F, "n_impostors", 0, MAX_COUNT)?;
        let seed = seed.any_u64(F, "seed")?;
        guarded(|| {
            let d = self.domain_number(domain, "FaceIndex.verification_pairs")?;
            let (pairs, labels) = self.inner.verification_pairs(d, n_impostors, seed)?;
            let flat: Vec<i64> = pairs.iter().flat_map(|p| [i64::from(p[0]), i64::from(p[1])]).collect();
            let arr = flat.into_pyarray(py).reshape([pairs.len(), 2])?.into_any();
            Ok((arr, labels.into_pyarray(py)))
        })
    }

    /// Identification split of ``domain`` over its identities with at least two images, keyed by
    /// domain and identity names, ``seed`` and ``draw``: one gallery image per identity and one
    /// probe (the paper's protocol), or with ``all_probes`` every other image of the identity as a
    /// probe: ``(gallery, probe)`` int64 image indices, identities in name order.
    #[pyo3(
        signature = (domain, seed = Int::new(0), draw = Int::new(0), all_probes = false),
        text_signature = "($self, domain, seed=0, draw=0, all_probes=False)"
    )]
    fn gallery_probe<'py>(
        &self,
        py: Python<'py>,
        domain: &Bound<'py, PyAny>,
        seed: Int,
        draw: Int,
        all_probes: bool,
    ) -> PyResult<(Int64Array<'py>, Int64Array<'py>)> {
        const F: &str = "FaceIndex.gallery_probe";
        let (seed, draw) = (seed.any_u64(F, "seed")?, draw.any_u64(F, "draw")?);
        guarded(|| {
            let d = self.domain_number(domain, "FaceIndex.gallery_probe")?;
            let (g, p) = self.inner.identification_split(d, seed, draw, all_probes)?;
            let to = |v: Vec<u32>| v.into_iter().map(i64::from).collect::<Vec<_>>().into_pyarray(py);
            Ok((to(g), to(p)))
        })
    }
}

/// One epoch of a rank's meta-batches as flat int64 arrays (n batches, D domains, B identities
/// per domain, k images per identity, m meta-test domains): ``batch_numbers`` (n,) in the
/// single-process stream, ``images`` (n*D*B*k,) per domain, identity slot, gallery first,
/// ``identities`` (n*D*B,), ``test_domains`` (n*m,; empty for leave_one_out).
#[pyclass(name = "EpochBatches", module = "mfr._core", frozen, get_all)]
pub(crate) struct PyEpochBatches {
    batch_numbers: Py<PyArray1<i64>>,
    images: Py<PyArray1<i64>>,
    identities: Py<PyArray1<i64>>,
    test_domains: Py<PyArray1<i64>>,
}

/// The Rust sampler behind ``mfr.DomainSampler`` (which adds iteration, state and views).
#[pyclass(name = "DomainSamplerCore", module = "mfr._core", frozen)]
pub(crate) struct PyDomainSamplerCore {
    inner: DomainSampler,
}

#[pymethods]
impl PyDomainSamplerCore {
    #[new]
    #[pyo3(
        signature = (index, ids_per_domain, images_per_id = Int::new(2), split = "leave_one_out", meta_test_domains = Int::new(1), seed = Int::new(0), rank = Int::new(0), world_size = Int::new(1)),
        text_signature = "(index, ids_per_domain, images_per_id=2, split='leave_one_out', meta_test_domains=1, seed=0, rank=0, world_size=1)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: &PyFaceIndex,
        ids_per_domain: Int,
        images_per_id: Int,
        split: &str,
        meta_test_domains: Int,
        seed: Int,
        rank: Int,
        world_size: Int,
    ) -> PyResult<Self> {
        const F: &str = "DomainSampler";
        guarded(|| {
            let world_size: usize = world_size.get(F, "world_size", 1, MAX_WORLD_SIZE)?;
            let config = SamplerConfig {
                ids_per_domain: ids_per_domain.get(F, "ids_per_domain", 1, MAX_COUNT)?,
                images_per_id: images_per_id.get(F, "images_per_id", 2, MAX_COUNT)?,
                split: SplitMode::parse(split)?,
                meta_test_domains: meta_test_domains.get(F, "meta_test_domains", 1, MAX_COUNT)?,
                seed: seed.any_u64(F, "seed")?,
                rank: rank.get(F, "rank", 0, world_size as i128 - 1)?,
                world_size,
            };
            Ok(PyDomainSamplerCore { inner: DomainSampler::new(&index.inner, config)? })
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    #[getter]
    fn n_domains(&self) -> usize {
        self.inner.n_domains()
    }

    /// This rank's batches of ``epoch``.
    fn epoch(&self, py: Python<'_>, epoch: Int) -> PyResult<PyEpochBatches> {
        let epoch = epoch.any_u64("DomainSampler.set_epoch", "epoch")?;
        guarded(|| {
            let e = py.allow_threads(|| self.inner.epoch(epoch))?;
            let array = |v: Vec<i64>| v.into_pyarray(py).unbind();
            Ok(PyEpochBatches {
                batch_numbers: array(e.batch_numbers.into_iter().map(|x| x as i64).collect()),
                images: array(e.images),
                identities: array(e.identities),
                test_domains: array(e.test_domains),
            })
        })
    }

    /// The splits of a batch with these meta-test domains: a list of (meta_train, meta_test) lists.
    fn splits<'py>(&self, py: Python<'py>, test_domains: Vec<Int>) -> PyResult<Bound<'py, PyList>> {
        let last = self.inner.n_domains() as i128 - 1;
        let test_domains: Vec<i64> = ints(&test_domains, "DomainSampler.splits", "test_domains", 0, last)?;
        let items: Vec<(Vec<u32>, Vec<u32>)> = self.inner.splits(&test_domains);
        PyList::new(py, items)
    }
}

fn image_source(ob: &Bound<'_, PyAny>, i: usize) -> PyResult<ImageSource> {
    if let Ok(b) = ob.downcast::<PyBytes>() {
        return Ok(ImageSource::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = ob.downcast::<PyByteArray>() {
        return Ok(ImageSource::Bytes(b.to_vec()));
    }
    let os = ob.py().import("os")?;
    match os.getattr("fspath")?.call1((ob,)) {
        Ok(p) => Ok(ImageSource::Path(p.extract::<PathBuf>().map_err(|_| {
            MfrError::invalid("decode_images", format!("source {i}: paths must be text, got bytes path {ob}"))
        })?)),
        Err(_) => Err(MfrError::invalid(
            "decode_images",
            format!(
                "source {i} must be a path (str or os.PathLike) or encoded image bytes, got {}",
                ob.get_type().name()?
            ),
        )
        .into()),
    }
}

/// The decoder's options from the Python arguments, sizes range-checked.
fn decode_options(
    func: &str,
    height: Int,
    width: Int,
    channels: Int,
    flips: Option<Vec<bool>>,
    skip_errors: bool,
) -> crate::Result<DecodeOptions> {
    Ok(DecodeOptions {
        height: height.get(func, "height", 1, MAX_SIDE)?,
        width: width.get(func, "width", 1, MAX_SIDE)?,
        channels: channels.get(func, "channels", 1, 3)?,
        flips: flips.unwrap_or_default(),
        skip_errors,
    })
}

/// Decodes images (paths or encoded bytes) into a (N, C, H, W) uint8 tensor; returns it with the
/// list of (position, reason) of images that failed (only when ``skip_errors``).
#[pyfunction]
#[pyo3(
    signature = (sources, height, width, channels = Int::new(3), flips = None, skip_errors = false),
    text_signature = "(sources, height, width, channels=3, flips=None, skip_errors=False)"
)]
fn decode_images(
    py: Python<'_>,
    sources: Vec<Bound<'_, PyAny>>,
    height: Int,
    width: Int,
    channels: Int,
    flips: Option<Vec<bool>>,
    skip_errors: bool,
) -> PyResult<(PyTensor, Vec<(usize, String)>)> {
    const F: &str = "decode_images";
    guarded(|| {
        let opts = decode_options(F, height, width, channels, flips, skip_errors)?;
        let srcs = sources.iter().enumerate().map(|(i, s)| image_source(s, i)).collect::<PyResult<Vec<_>>>()?;
        let decoded = without_gil(py, move || crate::data::decode_images(&srcs, &opts))?;
        Ok((PyTensor(decoded.images), decoded.failed))
    })
}

/// In-memory uint8 images (N, C, H, W), C = 1 or 3, converted to ``channels`` and ``height`` x
/// ``width`` exactly as ``decode_images`` converts decoded files (luma, antialiased resize).
#[pyfunction]
fn convert_images(
    py: Python<'_>,
    images: &Bound<'_, PyAny>,
    height: Int,
    width: Int,
    channels: Int,
) -> PyResult<PyTensor> {
    const F: &str = "convert_images";
    guarded(|| {
        let opts = decode_options(F, height, width, channels, None, false)?;
        let t = super::convert::tensor_arg(images, F, "images")?;
        Ok(PyTensor(without_gil(py, move || crate::data::convert_images(&t, &opts))?))
    })
}

/// An MXNet RecordIO file (``.rec`` with optional ``.idx``), read without MXNet.
#[pyclass(name = "RecordFile", module = "mfr.data", frozen)]
pub(crate) struct PyRecordFile {
    inner: RecordFile,
}

#[pymethods]
impl PyRecordFile {
    #[new]
    #[pyo3(signature = (rec, idx = None))]
    fn new(py: Python<'_>, rec: PathBuf, idx: Option<PathBuf>) -> PyResult<Self> {
        guarded(|| without_gil(py, move || RecordFile::open(&rec, idx.as_deref())).map(|inner| PyRecordFile { inner }))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Record keys in file order (int64).
    #[getter]
    fn keys<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        self.inner.entries.iter().map(|&(k, _)| k as i64).collect::<Vec<_>>().into_pyarray(py)
    }

    /// The raw data of one record.
    fn read<'py>(&self, py: Python<'py>, key: Int) -> PyResult<Bound<'py, PyBytes>> {
        let key = key.any_u64("RecordFile.read", "key")?;
        guarded(|| {
            let raw = self.inner.read(key)?;
            Ok(PyBytes::new(py, &raw))
        })
    }

    /// One insightface record: ``(labels float32 array, id, id2, image bytes)``.
    fn read_insightface<'py>(&self, py: Python<'py>, key: Int) -> PyResult<InsightfaceTuple<'py>> {
        let key = key.any_u64("RecordFile.read_insightface", "key")?;
        guarded(|| {
            let r = unpack_insightface(self.inner.read(key)?)?;
            Ok((r.labels.into_pyarray(py), r.id, r.id2, PyBytes::new(py, &r.payload)))
        })
    }

    /// ``(flags, first labels)`` of the given records (int64, float64), reading only their headers,
    /// in parallel.
    fn insightface_labels<'py>(
        &self,
        py: Python<'py>,
        keys: Vec<Int>,
    ) -> PyResult<(Int64Array<'py>, Bound<'py, PyArray1<f64>>)> {
        let keys: Vec<u64> = ints(&keys, "RecordFile.insightface_labels", "keys", 0, i128::from(u64::MAX))?;
        guarded(|| {
            let inner = &self.inner;
            let out: Vec<(u32, Vec<f32>)> = py.allow_threads(|| {
                crate::threads::install(|| {
                    keys.par_iter().map(|&k| inner.insightface_labels(k)).collect::<crate::Result<Vec<_>>>()
                })
            })??;
            let flags: Vec<i64> = out.iter().map(|(f, _)| i64::from(*f)).collect();
            let labels: Vec<f64> = out.iter().map(|(_, l)| l.first().copied().map_or(f64::NAN, f64::from)).collect();
            Ok((flags.into_pyarray(py), labels.into_pyarray(py)))
        })
    }

    /// Decodes the images of insightface records into a (N, C, H, W) uint8 tensor (records read
    /// and decoded in parallel); also the (position, reason) of skipped ones.
    #[pyo3(
        signature = (keys, height, width, channels = Int::new(3), flips = None, skip_errors = false),
        text_signature = "($self, keys, height, width, channels=3, flips=None, skip_errors=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        py: Python<'_>,
        keys: Vec<Int>,
        height: Int,
        width: Int,
        channels: Int,
        flips: Option<Vec<bool>>,
        skip_errors: bool,
    ) -> PyResult<(PyTensor, Vec<(usize, String)>)> {
        const F: &str = "RecordFile.decode";
        guarded(|| {
            let keys: Vec<u64> = ints(&keys, F, "keys", 0, i128::from(u64::MAX))?;
            let opts = decode_options(F, height, width, channels, flips, skip_errors)?;
            crate::data::check_decode_size(F, keys.len(), &opts)?;
            let inner = &self.inner;
            let decoded = py.allow_threads(|| -> crate::Result<crate::data::Decoded> {
                let sources = crate::threads::install(|| {
                    keys.par_iter()
                        .map(|&k| inner.read(k).and_then(unpack_insightface).map(|r| ImageSource::Bytes(r.payload)))
                        .collect::<crate::Result<Vec<_>>>()
                })??;
                crate::data::decode_images(&sources, &opts)
            })?;
            Ok((PyTensor(decoded.images), decoded.failed))
        })
    }
}

/// Writes a uint8 (N, C, H, W) CPU tensor as N image files (format from each path's extension).
#[pyfunction]
fn write_images(py: Python<'_>, images: &Bound<'_, PyAny>, paths: Vec<PathBuf>) -> PyResult<()> {
    guarded(|| {
        let t = super::convert::tensor_arg(images, "write_images", "images")?;
        without_gil(py, move || crate::data::write_images(&t, &paths))
    })
}
