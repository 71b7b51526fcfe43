"""Type stubs of the compiled Rust core ``mfr._core`` (checked against the module by the tests)."""

import os
from typing import Any, Literal, final

import numpy as np
import numpy.typing as npt
import torch

__version__: str
__all__ = [
    "BACKBONES",
    "DEFAULT_SCALE",
    "DEFAULT_TAU_N",
    "DEFAULT_TAU_P",
    "BackboneSpec",
    "DataError",
    "DataWarning",
    "DecodeWarning",
    "DeviceError",
    "DistributedError",
    "DomainSamplerCore",
    "EpochBatches",
    "FaceIndex",
    "FolderInUseError",
    "FolderLockWarning",
    "InvalidInputError",
    "KFoldResult",
    "MetaStepConfig",
    "MetaStepResult",
    "MfrError",
    "MfrWarning",
    "OutOfMemoryError",
    "RecordFile",
    "UndefinedMetricWarning",
    "ValAtFar",
    "VerificationSummary",
    "__version__",
    "_build_info",
    "_raise_panic_for_tests",
    "backbone_forward",
    "bootstrap_group_counts",
    "cached_memory",
    "convert_images",
    "cosine_scores",
    "decode_images",
    "domain_alignment",
    "eer",
    "get_num_threads",
    "hard_pair_attention",
    "identification_ranks",
    "kfold_accuracy",
    "meta_step",
    "name_seed",
    "pair_scores",
    "release_cached_memory",
    "roc_auc",
    "roc_curve",
    "set_num_threads",
    "soft_classification",
    "tar_at_far",
    "tune_heap",
    "verification_summary",
    "write_images",
]

class MfrError(Exception):
    """Base class of every error raised by mfr."""

class InvalidInputError(MfrError, ValueError):
    """An argument has the wrong dtype, shape, device layout or value."""

class OutOfMemoryError(InvalidInputError, MemoryError):
    """A request needs more memory than the process can have (available memory, its address-space limit); refused before allocating."""

class DataError(MfrError, OSError):
    """Data on disk is missing, unreadable or corrupt."""

class FolderInUseError(DataError):
    """Another process is writing the output folder (it holds the folder's lock)."""

class DeviceError(MfrError, RuntimeError):
    """A tensor is on the wrong or an unavailable device."""

class DistributedError(MfrError, RuntimeError):
    """A collective failed: a peer rank died, raised, or stopped answering within the timeout."""

class MfrWarning(UserWarning):
    """Base class of every warning mfr gives."""

class DataWarning(MfrWarning):
    """Some data was skipped (reported with what and why): unreadable images, links to nothing."""

class DecodeWarning(DataWarning):
    """Some images could not be read or decoded and were left out of the batch."""

class FolderLockWarning(MfrWarning):
    """The output folder's filesystem has no working locks: the run goes on without one."""

class UndefinedMetricWarning(MfrWarning):
    """A requested metric cannot be measured from the given pairs (and is reported as NaN)."""

def _build_info() -> dict[str, Any]: ...
def _raise_panic_for_tests(message: str) -> None: ...
def set_num_threads(n: int) -> None:
    """Sets the Rust pool's thread count; 0 restores the default (MFR_NUM_THREADS, else all cores)."""

def get_num_threads() -> int:
    """Threads the Rust pool uses for the next parallel call."""

def release_cached_memory() -> int:
    """Frees the key and curve buffers the metrics keep for their next report now; the bytes released."""

def cached_memory() -> int:
    """Bytes of key and curve buffers the metrics keep for their next report now."""

def tune_heap() -> bool:
    """Opt-in: sets glibc's malloc thresholds for the whole process (mmap 32 MiB, trim 2 GiB) so that
    CPU training reuses freed heap instead of page-faulting it back every step; once per process.
    Returns whether they are set (False outside glibc). The library never calls it; `mfr train` and
    `mfr reproduce` do on CPU, and say so."""

def cosine_scores(a: torch.Tensor | npt.ArrayLike, b: torch.Tensor | npt.ArrayLike) -> torch.Tensor:
    """Row-wise cosine of two (N, D) float32 contiguous tensors on one device -> (N,) float32 on it.
    NaN or inf in either is an InvalidInputError (as in every scoring function)."""

def pair_scores(
    embeddings: torch.Tensor | npt.ArrayLike, pairs: torch.Tensor | npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Cosine of embeddings[i], embeddings[j] per (i, j) row of the (M, 2) integer ``pairs`` -> (M,) float64."""

def roc_curve(
    scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike, drop_intermediate: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(fpr, tpr, thresholds), point for point as sklearn.metrics.roc_curve."""

def roc_auc(scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count one half)."""

def eer(scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike) -> tuple[float, float]:
    """(equal error rate, threshold)."""

def tar_at_far(
    scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike, fars: list[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(tar, threshold) per target FAR; NaN where a target is below 1/(impostor pairs)."""

def kfold_accuracy(
    scores: torch.Tensor | npt.ArrayLike,
    labels: torch.Tensor | npt.ArrayLike,
    n_folds: int = 10,
    protocol: str = "exact",
    folds: torch.Tensor | npt.ArrayLike | None = None,
) -> KFoldResult:
    """k-fold accuracy under a protocol ('exact', 'insightface', 'facexzoo')."""

@final
class ValAtFar:
    """insightface's VAL at a target FAR across folds."""

    @property
    def far_target(self) -> float: ...
    @property
    def val_mean(self) -> float: ...
    @property
    def val_std(self) -> float: ...
    @property
    def far_mean(self) -> float: ...
    @property
    def thresholds(self) -> npt.NDArray[np.float64]: ...
    @property
    def vals(self) -> npt.NDArray[np.float64]: ...
    @property
    def fars(self) -> npt.NDArray[np.float64]: ...

@final
class KFoldResult:
    """Result of kfold_accuracy: per-fold accuracies and thresholds, their mean and spread, VAL."""

    @property
    def protocol(self) -> str: ...
    @property
    def n_folds(self) -> int: ...
    @property
    def mean(self) -> float: ...
    @property
    def std(self) -> float: ...
    @property
    def fold_accuracies(self) -> npt.NDArray[np.float64]: ...
    @property
    def thresholds(self) -> npt.NDArray[np.float64]: ...
    @property
    def val(self) -> ValAtFar | None: ...

@final
class VerificationSummary:
    """Everything verification_report shows, from one sort, and the bootstrap resamples."""

    @property
    def fpr(self) -> npt.NDArray[np.float64]: ...
    @property
    def tpr(self) -> npt.NDArray[np.float64]: ...
    @property
    def thresholds(self) -> npt.NDArray[np.float64]: ...
    @property
    def auc(self) -> float: ...
    @property
    def eer(self) -> tuple[float, float]: ...
    @property
    def tar(self) -> npt.NDArray[np.float64]: ...
    @property
    def tar_thresholds(self) -> npt.NDArray[np.float64]: ...
    @property
    def best_accuracy(self) -> tuple[float, float]: ...
    @property
    def n_genuine(self) -> int: ...
    @property
    def n_impostor(self) -> int: ...
    @property
    def boot_auc(self) -> npt.NDArray[np.float64]: ...
    @property
    def boot_eer(self) -> npt.NDArray[np.float64]: ...
    @property
    def boot_accuracy(self) -> npt.NDArray[np.float64]: ...
    @property
    def boot_tar(self) -> npt.NDArray[np.float64]: ...

@final
class EpochBatches:
    """One epoch of a rank's meta-batches as flat int64 arrays."""

    @property
    def batch_numbers(self) -> npt.NDArray[np.int64]: ...
    @property
    def images(self) -> npt.NDArray[np.int64]: ...
    @property
    def identities(self) -> npt.NDArray[np.int64]: ...
    @property
    def test_domains(self) -> npt.NDArray[np.int64]: ...

def identification_ranks(
    gallery: torch.Tensor | npt.ArrayLike,
    gallery_ids: torch.Tensor | npt.ArrayLike,
    probes: torch.Tensor | npt.ArrayLike,
    probe_ids: torch.Tensor | npt.ArrayLike,
) -> npt.NDArray[np.int64]:
    """1-based rank of each probe's best gallery mate (closed set), int64 array of length P."""

def verification_summary(
    scores: torch.Tensor | npt.ArrayLike,
    labels: torch.Tensor | npt.ArrayLike,
    fars: list[float],
    n_bootstrap: int = 0,
    seed: int = 0,
    groups: torch.Tensor | npt.ArrayLike | None = None,
    groups2: torch.Tensor | npt.ArrayLike | None = None,
    n_groups: int | None = None,
) -> VerificationSummary:
    """ROC (drop_intermediate), AUC, EER, TAR@FAR, best accuracy and bootstrap resamples from one sort."""

def bootstrap_group_counts(n_groups: int, n_resamples: int, seed: int) -> npt.NDArray[np.int64]:
    """(n_resamples, n_groups) multiplicities of the group bootstrap's resamples."""

def name_seed(seed: int, names: list[str]) -> int:
    """A seed derived from seed and names (not from positions)."""

@final
class FaceIndex:
    """Every image of a multi-domain face dataset with its domain and identity."""

    @staticmethod
    def from_folder(root: str | os.PathLike[str]) -> FaceIndex: ...
    @staticmethod
    def from_list(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> FaceIndex: ...
    @staticmethod
    def from_arrays(paths: list[str], domains: list[Any], identities: list[Any]) -> FaceIndex: ...
    def domain_number(self, domain: int | str) -> int:
        """The number of a domain given by number, name, or number as text."""
    def __len__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[list[str], list[str], list[str]]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def domains(self) -> npt.NDArray[np.int64]: ...
    @property
    def identities(self) -> npt.NDArray[np.int64]: ...
    @property
    def identity_domains(self) -> npt.NDArray[np.int64]: ...
    @property
    def domain_names(self) -> list[str]: ...
    @property
    def identity_names(self) -> list[str]: ...
    @property
    def n_domains(self) -> int: ...
    @property
    def n_identities(self) -> int: ...
    def summary(self) -> dict[str, dict[str, float]]: ...
    def filter(self, min_images: int = 2) -> FaceIndex: ...
    def split_identities(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[FaceIndex, FaceIndex]: ...
    def verification_pairs(
        self, domain: int | str, n_impostors: int = 10_000, seed: int = 0
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
    def gallery_probe(
        self, domain: int | str, seed: int = 0, draw: int = 0, all_probes: bool = False
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...

@final
class DomainSamplerCore:
    """The Rust sampler behind mfr.DomainSampler."""

    def __new__(
        cls,
        index: FaceIndex,
        ids_per_domain: int,
        images_per_id: int = 2,
        split: str = "leave_one_out",
        meta_test_domains: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> DomainSamplerCore: ...
    def __len__(self) -> int: ...
    @property
    def batches_per_epoch(self) -> int: ...
    @property
    def n_domains(self) -> int: ...
    def epoch(self, epoch: int) -> EpochBatches: ...
    def splits(self, test_domains: list[int]) -> list[tuple[list[int], list[int]]]: ...

def decode_images(
    sources: list[str | os.PathLike[str] | bytes | bytearray],
    height: int,
    width: int,
    channels: int = 3,
    flips: list[bool] | None = None,
    skip_errors: bool = False,
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """Decode into a (N, C, H, W) uint8 tensor; also the (position, reason) of skipped images."""

@final
class RecordFile:
    """An MXNet RecordIO file (.rec with optional .idx), read without MXNet."""

    def __new__(cls, rec: str | os.PathLike[str], idx: str | os.PathLike[str] | None = None) -> RecordFile: ...
    def __len__(self) -> int: ...
    @property
    def keys(self) -> npt.NDArray[np.int64]: ...
    def read(self, key: int) -> bytes: ...
    def read_insightface(self, key: int) -> tuple[npt.NDArray[np.float32], int, int, bytes]: ...
    def insightface_labels(self, keys: list[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
    def decode(
        self,
        keys: list[int],
        height: int,
        width: int,
        channels: int = 3,
        flips: list[bool] | None = None,
        skip_errors: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[int, str]]]: ...

def convert_images(images: torch.Tensor | npt.ArrayLike, height: int, width: int, channels: int) -> torch.Tensor:
    """uint8 (N, 1|3, H, W) images converted to channels x height x width as decode_images converts files."""

def write_images(images: torch.Tensor | npt.ArrayLike, paths: list[str | os.PathLike[str]]) -> None:
    """Write a uint8 (N, C, H, W) CPU tensor as N image files (format from each extension)."""

def hard_pair_attention(
    gallery: torch.Tensor, probe: torch.Tensor, tau_p: float, tau_n: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """MFR's hard-pair attention loss of one domain (differentiable) and its mining statistics."""

def soft_classification(gallery: torch.Tensor, probe: torch.Tensor, scale: float) -> torch.Tensor:
    """MFR's soft-classification loss of one domain (differentiable)."""

def domain_alignment(domains: list[torch.Tensor]) -> torch.Tensor:
    """MFR's domain-alignment loss over per-domain features (differentiable)."""

BACKBONES: list[str]

@final
class BackboneSpec:
    """A backbone architecture: resolved sizes and every tensor's (name, shape, init), in forward order."""

    def __new__(
        cls, name: str, in_channels: int, input_size: int, width: int | None = None, embedding_dim: int | None = None
    ) -> BackboneSpec: ...
    @property
    def name(self) -> str: ...
    @property
    def in_channels(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def embedding_dim(self) -> int: ...
    @property
    def style_points(self) -> int: ...
    @property
    def params(self) -> list[tuple[str, list[int], str]]: ...
    @property
    def buffers(self) -> list[tuple[str, list[int], str]]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[type[BackboneSpec], tuple[str, int, int, int, int]]: ...

def backbone_forward(
    spec: BackboneSpec,
    params: list[torch.Tensor],
    buffers: list[torch.Tensor],
    images: torch.Tensor,
    mode: str,
    momentum: float | None = None,
    mix: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None,
) -> torch.Tensor:
    """Embeddings with explicit parameters; mode: train | train_no_update | eval; mix: MixStyle's
    (partners, weights, style points) in the training modes."""

def meta_step(
    spec: BackboneSpec,
    params: list[torch.Tensor],
    buffers: list[torch.Tensor],
    domains: list[torch.Tensor],
    splits: list[tuple[list[int], list[int]]],
    config: MetaStepConfig,
    loss_scale: float = 1.0,
) -> MetaStepResult:
    """One MFR meta-step; adds the combined gradient (times ``loss_scale``) to the parameters' .grad."""

DEFAULT_TAU_P: float
DEFAULT_TAU_N: float
DEFAULT_SCALE: float

@final
class MetaStepConfig:
    """MFR's hyperparameters, validated on construction (frozen)."""

    def __new__(
        cls,
        alpha: float = ...,
        gamma: float = ...,
        tau_p: float = ...,
        tau_n: float = ...,
        scale: float = ...,
        w_hp: float = ...,
        w_cls: float = ...,
        w_da: float = ...,
        first_order: bool = ...,
        lean: bool = ...,
        amp: Literal["bf16", "fp16"] | None = None,
    ) -> MetaStepConfig: ...
    @property
    def alpha(self) -> float: ...
    @property
    def gamma(self) -> float: ...
    @property
    def tau_p(self) -> float: ...
    @property
    def tau_n(self) -> float: ...
    @property
    def scale(self) -> float: ...
    @property
    def w_hp(self) -> float: ...
    @property
    def w_cls(self) -> float: ...
    @property
    def w_da(self) -> float: ...
    @property
    def first_order(self) -> bool: ...
    @property
    def lean(self) -> bool: ...
    @property
    def amp(self) -> Literal["bf16", "fp16"] | None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(
        self,
    ) -> tuple[
        type[MetaStepConfig],
        tuple[float, float, float, float, float, float, float, float, bool, bool, Literal["bf16", "fp16"] | None],
    ]: ...
    def __copy__(self) -> MetaStepConfig: ...
    def __deepcopy__(self, _memo: object) -> MetaStepConfig: ...

@final
class MetaStepResult:
    """What a meta-step reports (frozen): losses at theta and theta', and hard-pair counts."""

    @property
    def loss_s(self) -> float: ...
    @property
    def loss_t(self) -> float: ...
    @property
    def objective(self) -> float: ...
    @property
    def loss_hp(self) -> float: ...
    @property
    def loss_cls(self) -> float: ...
    @property
    def loss_da(self) -> float: ...
    @property
    def hard_positives(self) -> int: ...
    @property
    def hard_negatives(self) -> int: ...
    @property
    def skipped(self) -> bool: ...
