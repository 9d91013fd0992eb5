//! The image service's registry operations beyond pull: pushing a local
//! image under one of its names, checking login credentials, searching,
//! and describing a remote image.

use tokio::sync::mpsc::UnboundedSender;

use super::ImageService;
use crate::image::auth::Credentials;
use crate::image::pull::blob_key;
use crate::image::push::{Push, PushEvent, Pushed};
use crate::image::remote::{login_host, RemoteDescriptor, SearchResult};
use crate::image::{Error, Reference};

impl ImageService {
    /// Pushes the local image named `name` (a tagged reference) to the
    /// registry the name points at, then records the pushed manifest's
    /// `name@digest` on the image. The image's blobs stay leased (GC spares
    /// them) while they are read.
    pub async fn push(
        &self,
        name: &str,
        creds: &Credentials,
        progress: Option<UnboundedSender<PushEvent>>,
    ) -> Result<Pushed, Error> {
        let target = Reference::parse(name)?;
        let Some(tagged) = target.tagged().filter(|_| target.digest.is_none()) else {
            return Err(Error::InvalidReference {
                reference: name.to_string(),
                reason: "a push needs a name with a tag (not a digest)".into(),
            });
        };
        let Some(rec) = self.resolve(&tagged)? else {
            return Err(Error::NotFound(tagged));
        };
        let mut lease = self.leases.lease();
        for b in rec.blobs() {
            lease.add(blob_key(b));
        }
        let pushed = Push {
            registry: &self.puller.registry,
            content: &self.content,
            progress,
        }
        .run(&rec, &target, creds)
        .await?;
        drop(lease);
        self.tag(&rec.id, &target.with_digest(&pushed.digest))
            .await?;
        Ok(pushed)
    }

    /// Checks credentials for the registry `server` names; returns the host
    /// and the identity token the registry gave, if any.
    pub async fn login(
        &self,
        server: &str,
        creds: &Credentials,
    ) -> Result<(String, Option<String>), Error> {
        let host = login_host(server);
        let token = self.puller.registry.login(&host, creds).await?;
        Ok((host, token))
    }

    /// Repositories matching `term` (see `RegistryClient::search`).
    pub async fn search(
        &self,
        term: &str,
        limit: usize,
        creds: &Credentials,
    ) -> Result<Vec<SearchResult>, Error> {
        self.puller.registry.search(term, limit, creds).await
    }

    /// What `image` is on its registry, without pulling it.
    pub async fn describe(
        &self,
        image: &str,
        creds: &Credentials,
    ) -> Result<RemoteDescriptor, Error> {
        self.puller.registry.describe(image, creds).await
    }
}
