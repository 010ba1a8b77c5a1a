//! The forwarding of `ferry_backend::Layer`: a layer that writes only the
//! `request` hook sees every call that reaches the store, file and upload
//! calls included through `wrap_file`, and everything it does not write
//! reaches the wrapped backend unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_backend::layer::Request;
use ferry_backend::{
    Backend, FileHandle, FileLayer, Layer, Layered, LayeredFile, OpenOptions, Operation, RelPath,
    SetAttrs,
};
use ferry_backend_memory::MemoryBackend;

#[derive(Default)]
struct Seen(Mutex<HashMap<Operation, u32>>);

impl Seen {
    fn add(&self, op: Operation) {
        *self.0.lock().unwrap().entry(op).or_insert(0) += 1;
    }
    fn get(&self) -> HashMap<Operation, u32> {
        self.0.lock().unwrap().clone()
    }
}

struct Counting {
    inner: Arc<dyn Backend>,
    seen: Arc<Seen>,
}

impl Layer for Counting {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        self.seen.add(op);
        req
    }
    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(CountingFile {
            inner,
            seen: self.seen.clone(),
        }))
    }
}

struct CountingFile {
    inner: Box<dyn FileHandle>,
    seen: Arc<Seen>,
}

impl FileLayer for CountingFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        self.seen.add(op);
        req
    }
}

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn a_request_hook_sees_every_call_and_the_rest_passes_through() {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let seen = Arc::new(Seen::default());
    let be = Layered(Counting {
        inner: inner.clone(),
        seen: seen.clone(),
    });
    assert_eq!(be.capabilities(), inner.capabilities());
    assert_eq!(be.describe(), inner.describe());
    be.create_dir(&p("d"), None).await.unwrap();
    let rw = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    };
    let f = be.open_file(&p("d/f"), rw).await.unwrap();
    f.write_at(0, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(f.read_at(1, 3, Vec::new()).await.unwrap(), b"ell");
    assert_eq!(f.stat().await.unwrap().size, 5);
    f.set_attrs(&SetAttrs::default()).await.unwrap();
    f.sync().await.unwrap();
    drop(f);
    be.stat(&p("d/f")).await.unwrap();
    be.lstat(&p("d/f")).await.unwrap();
    assert_eq!(be.list(&p("d")).await.unwrap().len(), 1);
    be.copy(&p("d/f"), &p("d/g")).await.unwrap();
    be.rename(&p("d/g"), &p("d/h"), false).await.unwrap();
    be.set_attrs(&p("d/h"), &SetAttrs::default()).await.unwrap();
    be.set_attrs_nofollow(&p("d/h"), &SetAttrs::default())
        .await
        .unwrap();
    be.usage().await.unwrap();
    be.remove_file(&p("d/h")).await.unwrap();
    be.remove_file(&p("d/f")).await.unwrap();
    be.remove_dir(&p("d")).await.unwrap();
    // What the memory store refuses is refused through the layer too, and
    // still counted.
    assert!(be.symlink(b"x", &p("l")).await.is_err());
    assert!(be.read_link(&p("l")).await.is_err());
    assert!(be.hard_link(&p("a"), &p("b")).await.is_err());
    assert_eq!(
        be.stored_hash(&p("a"), ferry_backend::HashKind::Md5)
            .await
            .unwrap(),
        None
    );
    assert!(be.watch_changes(Arc::new(|_| {})).is_err());
    use Operation as O;
    let want: HashMap<Operation, u32> = [
        (O::CreateDir, 1),
        (O::Open, 1),
        (O::Write, 1),
        (O::Read, 1),
        (O::Stat, 3),
        (O::SetAttrs, 3),
        (O::Sync, 1),
        (O::List, 1),
        (O::Copy, 1),
        (O::Rename, 1),
        (O::Usage, 1),
        (O::Remove, 2),
        (O::RemoveDir, 1),
        (O::Symlink, 1),
        (O::ReadLink, 1),
        (O::HardLink, 1),
        (O::Hash, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen.get(), want);
    assert!(inner.list(&RelPath::root()).await.unwrap().is_empty());
}
