//! Uploaded files, stored byte for byte in the database in 1 MiB chunks, so that every node of a
//! shared PostgreSQL deployment can read and serve them, and a worker can read one from any offset.

use std::io::Read;

use bytes::Bytes;
use entity::{file, file_chunk};
use futures_util::{Stream, StreamExt};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect};
use sha2::{Digest, Sha256};

use crate::domain::ids::{IdKind, new_id};
use crate::domain::time::now_ms;
use crate::event_log::EventStore;

pub const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub id: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload broke off: {0}")]
    Body(String),
    /// No byte arrived for [`UPLOAD_IDLE`]: a stalled client must not hold its request open.
    #[error("no byte of the upload arrived for {} s", UPLOAD_IDLE.as_secs())]
    Stalled,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How long an upload may go without a byte before it is given up.
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Streams `body` into storage, hashing as it goes; holds one chunk in memory. On any error (or
/// [`UPLOAD_IDLE`] without a byte) the partial file is removed.
pub async fn store<E: std::fmt::Display>(
    store: &EventStore,
    project_id: &str,
    body: impl Stream<Item = Result<Bytes, E>>,
    max_bytes: u64,
) -> Result<StoredFile, UploadError> {
    let mut sink = FileSink::create(store, project_id).await?;
    let mut body = std::pin::pin!(body);
    let written: Result<(), UploadError> = async {
        while let Some(bytes) = tokio::time::timeout(UPLOAD_IDLE, body.next()).await.map_err(|_| UploadError::Stalled)? {
            let bytes = bytes.map_err(|e| UploadError::Body(e.to_string()))?;
            if sink.size + bytes.len() as u64 > max_bytes {
                return Err(UploadError::TooLarge(max_bytes));
            }
            sink.write(&bytes).await?;
        }
        Ok(())
    }
    .await;
    match written {
        Ok(()) => Ok(sink.finish().await?),
        Err(e) => {
            sink.discard().await;
            Err(e)
        }
    }
}

/// A file being written in order: an upload as it arrives, an export as it is produced. A full
/// chunk is stored while the next one fills, so the writer never waits for the database but when
/// it is a whole chunk ahead (memory: two chunks). It is complete (and listed as such) once
/// [`FileSink::finish`] returns.
pub struct FileSink {
    store: EventStore,
    id: String,
    chunk: Vec<u8>,
    idx: i32,
    size: u64,
    hasher: Sha256,
    storing: Option<tokio::task::JoinHandle<Result<(), DbErr>>>,
}

impl FileSink {
    pub async fn create(store: &EventStore, project_id: &str) -> Result<Self, DbErr> {
        let id = new_id(IdKind::File);
        let row = file::Model { id: id.clone(), project_id: project_id.to_owned(), size_bytes: 0, complete: false, created_at_ms: now_ms() };
        file::Entity::insert(row.into_active_model()).exec_without_returning(store.db()).await?;
        Ok(Self { store: store.clone(), id, chunk: Vec::with_capacity(CHUNK_BYTES), idx: 0, size: 0, hasher: Sha256::new(), storing: None })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), DbErr> {
        self.size += bytes.len() as u64;
        self.hasher.update(bytes);
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.chunk.len() == CHUNK_BYTES {
                let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
                self.stored().await?;
                let (store, id, idx) = (self.store.clone(), self.id.clone(), self.idx);
                self.storing = Some(tokio::spawn(async move { insert_chunk(&store, &id, idx, full).await }));
                self.idx += 1;
            }
        }
        Ok(())
    }

    /// Waits for the chunk being stored, if any.
    async fn stored(&mut self) -> Result<(), DbErr> {
        match self.storing.take() {
            Some(storing) => storing.await.map_err(|e| DbErr::Custom(format!("storing a file chunk stopped: {e}")))?,
            None => Ok(()),
        }
    }

    pub async fn finish(mut self) -> Result<StoredFile, DbErr> {
        self.stored().await?;
        if !self.chunk.is_empty() {
            insert_chunk(&self.store, &self.id, self.idx, std::mem::take(&mut self.chunk)).await?;
        }
        let done = file::ActiveModel { id: Set(self.id.clone()), size_bytes: Set(self.size as i64), complete: Set(true), ..Default::default() };
        file::Entity::update(done).exec(self.store.db()).await?;
        Ok(StoredFile { id: self.id, size_bytes: self.size, sha256: hex(&self.hasher.finalize()) })
    }

    /// Removes what was written (a failed upload or export).
    pub async fn discard(mut self) {
        let _ = self.stored().await;
        if let Err(e) = delete(self.store.db(), std::slice::from_ref(&self.id)).await {
            tracing::warn!(file_id = %self.id, error = %e, "a partial file stays until the hourly clean-up");
        }
    }
}

async fn insert_chunk(store: &EventStore, file_id: &str, idx: i32, data: Vec<u8>) -> Result<(), DbErr> {
    // Through the store's writer so that, on SQLite, chunk writes queue fairly with other writers.
    let writer = store.begin().await?;
    let row = file_chunk::Model { file_id: file_id.to_owned(), idx, data };
    file_chunk::Entity::insert(row.into_active_model()).exec_without_returning(writer.conn()).await?;
    writer.commit().await
}

async fn read_chunk(db: &DatabaseConnection, file_id: &str, idx: i32) -> Result<Option<Vec<u8>>, DbErr> {
    file_chunk::Entity::find()
        .select_only()
        .column(file_chunk::Column::Data)
        .filter(file_chunk::Column::FileId.eq(file_id))
        .filter(file_chunk::Column::Idx.eq(idx))
        .into_tuple()
        .one(db)
        .await
}

/// The file's bytes in order, a chunk at a time, for downloads.
pub fn stream(db: DatabaseConnection, file_id: String) -> impl Stream<Item = Result<Bytes, DbErr>> {
    futures_util::stream::try_unfold(0i32, move |idx| {
        let (db, file_id) = (db.clone(), file_id.clone());
        async move { Ok(read_chunk(&db, &file_id, idx).await?.map(|data| (Bytes::from(data), idx + 1))) }
    })
}

/// Removes files and their bytes (the retention purge, failed uploads).
/// Whether the file is stored (whole): an erasure or a purge may have removed it.
pub async fn exists(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(file::Entity::find_by_id(id).filter(file::Column::Complete.eq(true)).one(conn).await?.is_some())
}

pub async fn delete(conn: &impl ConnectionTrait, ids: &[String]) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    file_chunk::Entity::delete_many().filter(file_chunk::Column::FileId.is_in(ids.iter().cloned())).exec(conn).await?;
    Ok(file::Entity::delete_many().filter(file::Column::Id.is_in(ids.iter().cloned())).exec(conn).await?.rows_affected)
}

/// Reads a stored file from a byte offset, for parsing on a blocking thread: each chunk is fetched
/// when the previous one is used up, so memory stays at one chunk whatever the file's size.
pub struct FileReader {
    db: DatabaseConnection,
    runtime: tokio::runtime::Handle,
    file_id: String,
    next_idx: i32,
    chunk: Vec<u8>,
    pos: usize,
    /// Bytes to skip at the start of the first chunk fetched.
    skip: usize,
}

impl FileReader {
    /// Must be created on the runtime and read from a blocking thread (`spawn_blocking`).
    pub fn open_at(db: DatabaseConnection, file_id: &str, offset: u64) -> Self {
        let chunk_size = CHUNK_BYTES as u64;
        Self {
            db,
            runtime: tokio::runtime::Handle::current(),
            file_id: file_id.to_owned(),
            next_idx: (offset / chunk_size) as i32,
            chunk: Vec::new(),
            pos: 0,
            skip: (offset % chunk_size) as usize,
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.chunk.len() {
            let fetched = self
                .runtime
                .block_on(read_chunk(&self.db, &self.file_id, self.next_idx))
                .map_err(std::io::Error::other)?;
            let Some(chunk) = fetched else { return Ok(0) };
            self.next_idx += 1;
            self.chunk = chunk;
            self.pos = std::mem::take(&mut self.skip).min(self.chunk.len());
            if self.pos >= self.chunk.len() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
