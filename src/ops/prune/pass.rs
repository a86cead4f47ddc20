//! The phases of one prune: retention's decisions, then what goes of snapshot folders,
//! media and drill reports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One prune of one workspace: what every phase reads.
pub(super) struct Pass<'a> {
    pub(super) core: &'a Core,
    pub(super) opts: &'a PruneOptions,
    /// Snapshots whose manifest cannot be read (never deleted, never garbage).
    pub(super) damaged: HashSet<String>,
    pub(super) manifests: BTreeMap<String, crate::repo::manifest::Manifest>,
    pub(super) now: DateTime<Utc>,
    pub(super) grace: chrono::Duration,
}

impl Pass<'_> {
    /// Retention's decisions (a locked manifest keeps its snapshot, saying until when; a
    /// damaged one is decided about by nobody), into the report; the manifests of the
    /// snapshots that go are deleted first, and the catalog's index forgets them. The
    /// snapshots that go.
    pub(super) async fn decide(
        &self,
        policies: &[Policy],
        pins: &HashSet<String>,
        report: &mut PruneReport,
    ) -> Result<HashSet<String>> {
        let (core, opts) = (self.core, self.opts);
        let candidates: Vec<Candidate> = self
            .manifests
            .values()
            .map(|m| Candidate { id: m.id.clone(), kind: m.kind, taken_at: m.started_at, pinned: pins.contains(&m.id) })
            .collect();
        let retention_of = |kind: SnapshotKind| -> Option<(Retention, chrono_tz::Tz)> {
            policies.iter().find(|p| p.kind == Some(kind)).map(|p| (p.retention.clone(), p.time_zone))
        };
        let mut decisions = retention::select(&candidates, retention_of, opts.as_of.unwrap_or_else(chrono::Utc::now));
        // Under object lock, a snapshot retention would delete but whose manifest is still
        // locked is kept, saying until when (S3 would refuse the delete).
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            if let Some(until) = core.repo.locked_until(&layout::manifest(&opts.workspace, &d.id)).await? {
                d.keep = true;
                let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                d.reasons.push(format!("kept: locked until {until}"));
            }
        }
        let mut doomed: HashSet<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.id.clone()).collect();
        for d in &report.damaged {
            decisions.push(Decision {
                id: d.id.clone(),
                keep: true,
                reasons: vec![format!("its manifest cannot be read, so nothing decides about it: {}", d.problem)],
            });
        }
        decisions.sort_by(|a, b| a.id.cmp(&b.id));
        report.decisions = decisions;
        let mut kept_locked = Vec::new();
        for id in &doomed {
            let manifest = layout::manifest(&opts.workspace, id);
            if !opts.dry_run && !delete_unless_locked(core, &manifest, &mut report.locked_objects).await? {
                // Locked after all (its lock moved meanwhile): the snapshot stays whole.
                kept_locked.push(id.clone());
            }
        }
        for id in kept_locked {
            doomed.remove(&id);
            if let Some(d) = report.decisions.iter_mut().find(|d| d.id == id) {
                d.keep = true;
                d.reasons.push("kept: its manifest is locked".into());
            }
        }
        // The catalog indexes the primary's snapshots only.
        if !opts.dry_run
            && !doomed.is_empty()
            && core.copy_name().is_none()
            && let Ok(catalog) = core.catalog().await
        {
            let gone: Vec<String> = doomed.iter().cloned().collect();
            if let Err(e) = catalog.unindex_snapshots(&opts.workspace, &gone).await {
                tracing::warn!(error = %e.report(), "deleted snapshots stay in the catalog's index until the next listing");
                let _ = catalog.set_snapshot_index_synced(&opts.workspace, None).await;
            }
        }
        Ok(doomed)
    }

    /// Everything under snapshots/: objects of deleted snapshots go now (nobody else uses
    /// them); objects of snapshots that never committed go once the whole folder is older
    /// than the grace period. Whether a snapshot may be writing now (an uncommitted folder
    /// inside the grace period).
    pub(super) async fn snapshot_folders(&self, doomed: &HashSet<String>, report: &mut PruneReport) -> Result<bool> {
        let (core, opts, now) = (self.core, self.opts, self.now);
        let listing = core.repo.list_all(&layout::snapshots(&opts.workspace)).await?;
        let mut by_snapshot: BTreeMap<String, Vec<StoredObject>> = BTreeMap::new();
        for object in listing {
            if let Some(id) = object.key.parts().nth(3) {
                by_snapshot.entry(id.as_ref().to_string()).or_default().push(object);
            }
        }
        let mut writing_now = false;
        for (id, objects) in &by_snapshot {
            let committed = self.manifests.contains_key(id) && !doomed.contains(id.as_str());
            if committed || self.damaged.contains(id) {
                continue;
            }
            let garbage = !self.manifests.contains_key(id);
            let newest = objects.iter().map(|o| o.modified).max().unwrap_or(now);
            if garbage && now.signed_duration_since(newest) < self.grace {
                writing_now = true;
                report.garbage_in_grace += objects.len() as u64;
                continue;
            }
            for o in objects {
                if !opts.dry_run && !delete_unless_locked(core, &o.key, &mut report.locked_objects).await? {
                    continue;
                }
                report.deleted_objects += 1;
                report.deleted_bytes += o.size;
                if garbage {
                    report.garbage_objects += 1;
                }
            }
        }
        Ok(writing_now)
    }

    /// Media no remaining snapshot references. While a snapshot may be writing, or a
    /// manifest cannot be read, media are left alone entirely: what those reference is
    /// unknown.
    pub(super) async fn media(
        &self,
        doomed: &HashSet<String>,
        writing_now: bool,
        report: &mut PruneReport,
    ) -> Result<()> {
        let (core, opts, now) = (self.core, self.opts, self.now);
        let referenced: HashSet<String> = self
            .manifests
            .values()
            .filter(|m| !doomed.contains(m.id.as_str()))
            .flat_map(|m| m.media.iter().flat_map(|media| media.files.iter().map(|f| f.sha256.clone())))
            .collect();
        for o in core.repo.list(&layout::media_dir(&opts.workspace)).await? {
            let sha = o.key.filename().and_then(|f| f.strip_suffix(".zst.age")).unwrap_or_default().to_string();
            if referenced.contains(&sha) {
                continue;
            }
            if writing_now || !self.damaged.is_empty() || now.signed_duration_since(o.modified) < self.grace {
                report.garbage_in_grace += 1;
                continue;
            }
            if !opts.dry_run && !delete_unless_locked(core, &o.key, &mut report.locked_objects).await? {
                continue;
            }
            report.deleted_objects += 1;
            report.deleted_bytes += o.size;
            report.garbage_objects += 1;
        }
        Ok(())
    }

    /// Drill reports: kept as long as the longest-kept snapshots, the newest always.
    pub(super) async fn drill_reports(
        &self,
        policies: &[Policy],
        as_of: DateTime<Utc>,
        report: &mut PruneReport,
    ) -> Result<()> {
        let (core, opts) = (self.core, self.opts);
        let horizon = policies
            .iter()
            .filter_map(|p| p.retention.keep_within)
            .max()
            .unwrap_or(chrono::Duration::days(retention::DRILL_REPORTS_DEFAULT_DAYS));
        let reports = core.repo.list(&layout::drill_reports(&opts.workspace)).await?;
        let reports: Vec<(Key, DateTime<Utc>)> = reports.into_iter().map(|o| (o.key, o.modified)).collect();
        for key in retention::drill_reports_to_delete(&reports, horizon, as_of) {
            if !opts.dry_run && !delete_unless_locked(core, &key, &mut report.locked_objects).await? {
                continue;
            }
            report.drill_reports_deleted += 1;
        }
        Ok(())
    }
}
