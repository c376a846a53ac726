//! The blob cache's HTTP API, shared by the server and the app: paths, request and answer
//! bodies, and the stable error codes of `{code, message}` error bodies.
//!
//! Every route is under `/api/rooms/<room>/` and needs the room's grant (handed out on join) as
//! `Authorization: Bearer <grant>` or, for links and `<img src>`, `?grant=<grant>`.
//!
//! | request | answer |
//! |---|---|
//! | `HEAD blobs/<hash>` | 200 when the room has the blob, else 404 `unknown_blob` |
//! | `GET blobs/<hash>[?name=..&download]` | the bytes, with `Range`, `ETag`, `If-None-Match`, `If-Range` |
//! | `PUT blobs/<hash>?name=..` (body, `Content-Type`) | one-shot upload: 201 [`BlobInfo`] (200 if already there) |
//! | `POST uploads` ([`NewUpload`]) | 201 [`UploadState`], or 200 [`BlobInfo`] when the cache already has the hash |
//! | `HEAD uploads/<id>` | `Upload-Offset` and `Upload-Length`: how much arrived |
//! | `PATCH uploads/<id>` (`Upload-Offset`, body) | 204 with the new `Upload-Offset`; the chunk that reaches the length finishes: 201 [`BlobInfo`] |
//! | `DELETE uploads/<id>` | 204: abandoned, its bytes removed |

use crate::ids::{BlobHash, FileName, MediaType, RoomName};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The header that carries an upload's offset, both ways.
pub const UPLOAD_OFFSET: &str = "upload-offset";
/// The header that carries an upload's announced length.
pub const UPLOAD_LENGTH: &str = "upload-length";

/// Path of a room's blob.
pub fn blob_path(room: &RoomName, hash: &BlobHash) -> String {
    format!("/api/rooms/{room}/blobs/{hash}")
}

/// Path where a room's resumable uploads are created.
pub fn uploads_path(room: &RoomName) -> String {
    format!("/api/rooms/{room}/uploads")
}

/// Path of one resumable upload.
pub fn upload_path(room: &RoomName, id: &UploadId) -> String {
    format!("/api/rooms/{room}/uploads/{id}")
}

crate::ids::random_hex_id!(
    /// A resumable upload's id: 32 lowercase hex digits chosen by the server.
    UploadId,
    "upload id"
);

/// A blob as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub hash: BlobHash,
    pub size: u64,
    /// The name it was first uploaded with.
    pub name: FileName,
    pub mime: MediaType,
}

/// `POST uploads`: announce a file before sending it in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUpload {
    pub hash: BlobHash,
    pub size: u64,
    pub name: FileName,
    pub mime: MediaType,
}

/// A resumable upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub id: UploadId,
    /// Bytes received so far: the next chunk starts here.
    pub offset: u64,
    pub size: u64,
}

/// Stable codes of the blob API's error bodies `{"code", "message"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobErrorCode {
    /// A path, query, header or body is not what the API takes.
    BadRequest,
    /// No grant was given (401).
    GrantRequired,
    /// The grant is forged, expired or for another room (403).
    AccessDenied,
    /// The grant's holder is in the room but lacks the right this needs (upload, download,
    /// broadcast, watch, record) (403).
    Forbidden,
    /// The room has no such blob (404).
    UnknownBlob,
    /// No such upload in this room (404).
    UnknownUpload,
    /// `Content-Length` is required for this upload (411).
    LengthRequired,
    /// The blob is larger than the server's maximum blob size (413).
    BlobTooLarge,
    /// The room's files would exceed its quota (413).
    QuotaExceeded,
    /// The cache is full of files that rooms still refer to (507).
    CacheFull,
    /// Too many uploads in progress (429).
    TooManyUploads,
    /// The bytes do not hash to the announced hash; nothing was kept (422).
    HashMismatch,
    /// More or fewer bytes than announced; nothing was kept (422).
    LengthMismatch,
    /// A chunk does not start where the upload stands (409); `Upload-Offset` says where.
    OffsetMismatch,
    /// Another request is writing to this upload (409).
    UploadBusy,
    /// The requested range is outside the blob (416).
    RangeNotSatisfiable,
    /// The client stopped sending in the middle of a body (408).
    Timeout,
    /// No such route (404) or method (405).
    NotFound,
    MethodNotAllowed,
    /// The server failed to read or write its disk (500).
    StorageFailed,
}

impl BlobErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobErrorCode::BadRequest => "bad_request",
            BlobErrorCode::GrantRequired => "grant_required",
            BlobErrorCode::AccessDenied => "access_denied",
            BlobErrorCode::Forbidden => "forbidden",
            BlobErrorCode::UnknownBlob => "unknown_blob",
            BlobErrorCode::UnknownUpload => "unknown_upload",
            BlobErrorCode::LengthRequired => "length_required",
            BlobErrorCode::BlobTooLarge => "blob_too_large",
            BlobErrorCode::QuotaExceeded => "quota_exceeded",
            BlobErrorCode::CacheFull => "cache_full",
            BlobErrorCode::TooManyUploads => "too_many_uploads",
            BlobErrorCode::HashMismatch => "hash_mismatch",
            BlobErrorCode::LengthMismatch => "length_mismatch",
            BlobErrorCode::OffsetMismatch => "offset_mismatch",
            BlobErrorCode::UploadBusy => "upload_busy",
            BlobErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            BlobErrorCode::Timeout => "timeout",
            BlobErrorCode::NotFound => "not_found",
            BlobErrorCode::MethodNotAllowed => "method_not_allowed",
            BlobErrorCode::StorageFailed => "storage_failed",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            BlobErrorCode::BadRequest => 400,
            BlobErrorCode::GrantRequired => 401,
            BlobErrorCode::AccessDenied | BlobErrorCode::Forbidden => 403,
            BlobErrorCode::UnknownBlob | BlobErrorCode::UnknownUpload | BlobErrorCode::NotFound => 404,
            BlobErrorCode::MethodNotAllowed => 405,
            BlobErrorCode::Timeout => 408,
            BlobErrorCode::OffsetMismatch | BlobErrorCode::UploadBusy => 409,
            BlobErrorCode::LengthRequired => 411,
            BlobErrorCode::BlobTooLarge | BlobErrorCode::QuotaExceeded => 413,
            BlobErrorCode::RangeNotSatisfiable => 416,
            BlobErrorCode::HashMismatch | BlobErrorCode::LengthMismatch => 422,
            BlobErrorCode::TooManyUploads => 429,
            BlobErrorCode::StorageFailed => 500,
            BlobErrorCode::CacheFull => 507,
        }
    }
}

impl fmt::Display for BlobErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer of the blob API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: BlobErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_32_lowercase_hex() {
        let id = UploadId::from_bits(0xabc);
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(UploadId::try_from(id.as_str().to_owned()), Ok(id));
        assert!(UploadId::try_from("../../etc/passwd".to_owned()).is_err());
        assert!(UploadId::try_from("A".repeat(32)).is_err());
        assert!(UploadId::try_from(String::new()).is_err());
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for code in [BlobErrorCode::HashMismatch, BlobErrorCode::RangeNotSatisfiable, BlobErrorCode::StorageFailed] {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.status()));
        }
        let err: ApiError = serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#).unwrap();
        assert_eq!(err.code, BlobErrorCode::QuotaExceeded);
    }
}
