//! Multi-domain face datasets: the index of images, domains and identities.

pub mod decode;
pub mod index;
pub mod recordio;
pub mod resize;

pub use decode::{check_decode_size, convert_images, decode_images, write_images, DecodeOptions, Decoded, ImageSource};
pub use index::{DomainSummary, FaceIndex};
pub use recordio::{unpack_insightface, InsightfaceRecord, RecordFile};
