//! Forwards `SegmentStorage` from a store wrapper to the `Store` it holds.

/// Implements [`SegmentStorage`](crate::SegmentStorage) for a wrapper type with a `store`
/// field of type [`Store`](crate::Store), and `Deref<Target = Store>`.
macro_rules! delegate_segment_storage {
    ($wrapper:ty) => {
        impl std::ops::Deref for $wrapper {
            type Target = $crate::store::Store;

            fn deref(&self) -> &$crate::store::Store {
                &self.store
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::SegmentStorage for $wrapper {
            async fn write(&self, path: &$crate::StoragePath, data: &[u8]) -> $crate::Result<()> {
                $crate::storage::SegmentStorage::write(&self.store, path, data).await
            }

            async fn read(&self, path: &$crate::StoragePath) -> $crate::Result<Vec<u8>> {
                $crate::storage::SegmentStorage::read(&self.store, path).await
            }

            async fn exists(&self, path: &$crate::StoragePath) -> $crate::Result<bool> {
                $crate::storage::SegmentStorage::exists(&self.store, path).await
            }

            async fn list(
                &self,
                prefix: &$crate::StoragePath,
            ) -> $crate::Result<Vec<$crate::StoragePath>> {
                $crate::storage::SegmentStorage::list(&self.store, prefix).await
            }

            async fn delete(&self, path: &$crate::StoragePath) -> $crate::Result<()> {
                $crate::storage::SegmentStorage::delete(&self.store, path).await
            }

            async fn rename(
                &self,
                from: &$crate::StoragePath,
                to: &$crate::StoragePath,
            ) -> $crate::Result<()> {
                $crate::storage::SegmentStorage::rename(&self.store, from, to).await
            }
        }
    };
}

pub(crate) use delegate_segment_storage;
