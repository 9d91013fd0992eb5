//! Image operations that publish Docker's image events (`pull`, `untag`,
//! `delete`) from inside the engine, so an image pulled or removed through
//! CRI shows in `docker events` as one pulled or removed through Docker.

use super::events::Event;
use super::Engine;
use crate::image::auth::Credentials;
use crate::image::{manifest, Error, ImageRecord, Reference};

impl Engine {
    /// Publishes an image event with Docker's attributes.
    pub(crate) fn emit_image(&self, action: &str, id: &str, name: &str) {
        self.events
            .emit(Event::new("image", action, id).with("name", name));
    }

    /// Pulls `name` for `platform` and publishes `pull` (named as Docker
    /// names it: `busybox:latest` for `docker.io/library/busybox:latest`).
    pub async fn pull_image(
        &self,
        name: &str,
        creds: &Credentials,
        platform: &manifest::Platform,
    ) -> Result<ImageRecord, Error> {
        let rec = self.images.pull_for(name, creds, platform).await?;
        let shown = Reference::parse(name)
            .map(|r| r.familiar())
            .unwrap_or_else(|_| name.to_string());
        self.emit_image("pull", &shown, &shown);
        Ok(rec)
    }

    /// Takes the name `name` off its image and publishes `untag`.
    pub async fn untag_image(&self, name: &str) -> Result<Option<ImageRecord>, Error> {
        let after = self.images.untag(name).await?;
        if let Some(rec) = &after {
            let id = rec.id.as_str();
            self.emit_image("untag", id, id);
        }
        Ok(after)
    }

    /// Removes the image `name_or_id` (with every name it still has) and
    /// publishes `delete`; false when there was no such image.
    pub async fn delete_image(&self, name_or_id: &str) -> Result<bool, Error> {
        let id = self.images.resolve(name_or_id)?.map(|r| r.id.to_string());
        let removed = self.images.remove(name_or_id).await?;
        if let (true, Some(id)) = (removed, id) {
            self.emit_image("delete", &id, &id);
        }
        Ok(removed)
    }

    /// CRI's RemoveImage: the image and all its names go, as `docker rmi`
    /// of its id does (an `untag` per name, then `delete`).
    pub async fn remove_image(&self, name_or_id: &str) -> Result<bool, Error> {
        let Some(rec) = self.images.resolve(name_or_id)? else {
            return Ok(false);
        };
        for name in rec.repo_tags.iter().chain(&rec.repo_digests) {
            self.untag_image(name).await?;
        }
        self.delete_image(rec.id.as_str()).await
    }
}
