//! Routing tracks to template instances: which outputs a track feeds, when an output
//! starts, keyframe requests, and the manifest entries that follow.

use std::collections::BTreeMap;
use std::time::Instant;

use gst::prelude::*;
use tracing::{debug, info, warn};

use super::output::Output;
use super::simulcast::{Layer, LayerChange};
use super::{media, Call, CallEvent, Track};
use crate::recording::{LayerSpan, PipelineEntry, TrackEntry, TrackStatus};
use crate::templates::{Kind, Layers, Scope, Template};

impl Call {
    /// Creates the participant-scope outputs with an input per offered track they accept.
    pub(super) fn create_participant_outputs(&mut self, session_id: &str) {
        let templates = self.settings.templates.clone();
        for template in templates.iter().filter(|t| t.scope == Scope::Participant) {
            let Some(session) = self.sessions.get(session_id) else {
                return;
            };
            let tracks: Vec<(u32, Kind)> = session
                .offered
                .iter()
                .filter(|t| template.input_for(t.kind).is_some())
                .filter(|t| {
                    t.encodings.iter().any(|enc| {
                        media::codec_for(enc)
                            .is_some_and(|c| c.available() && template.accepts(c.media_type))
                    })
                })
                .map(|t| (t.mline, t.kind))
                .collect();
            if tracks.is_empty() {
                continue;
            }
            let name = session.name.clone();
            let vars = self.vars(&name, None);
            if let Err(e) = self.add_output(session_id, template, &vars, &tracks, None) {
                self.warn(format!(
                    "participant {name}: template {} could not start: {e}",
                    template.name
                ));
            }
        }
    }

    pub(super) fn vars(
        &self,
        participant: &str,
        track: Option<(&str, Kind, &str)>,
    ) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        vars.insert("call_dir", self.dir.to_string_lossy().into_owned());
        vars.insert("call", self.manifest.dir.clone());
        vars.insert("participant", participant.to_owned());
        if let Some((track, kind, codec)) = track {
            vars.insert("track", track.to_owned());
            vars.insert("kind", kind.as_str().to_owned());
            vars.insert("codec", codec.to_owned());
        }
        vars
    }

    pub(super) fn add_output(
        &mut self,
        session_id: &str,
        template: &Template,
        vars: &BTreeMap<&'static str, String>,
        tracks: &[(u32, Kind)],
        track_name: Option<String>,
    ) -> Result<usize, String> {
        let (bin, text) = template.instantiate(vars).map_err(|e| e.to_string())?;
        let id = self.next_output;
        self.next_output += 1;
        let output = Output::create(id, template, bin, &self.pipeline, tracks, &self.dir)?;
        let Some(session) = self.sessions.get_mut(session_id) else {
            return Err("session gone".into());
        };
        self.manifest.pipelines.push(PipelineEntry {
            template: template.name.clone(),
            scope: template.scope.to_string(),
            participant: session.peer_id.clone(),
            track: track_name,
            files: output.files.clone(),
            pipeline: text,
        });
        debug!(call = %self.settings.name, template = %template.name, files = ?output.files, "output created");
        session.outputs.push(output);
        Ok(id)
    }

    pub(super) fn on_track(
        &mut self,
        session_id: &str,
        mline: u32,
        codec: &'static media::Codec,
        chain: media::TrackChain,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        info!(call = %self.settings.name, participant = %session.name, mline, codec = codec.name, "track arrived");
        let track_name = format!("{}{mline}", codec.kind.as_str());
        let participant = session.name.clone();
        let peer_id = session.peer_id.clone();
        session.tracks.insert(
            mline,
            Track {
                kind: codec.kind,
                codec,
                chain: chain.clone(),
                last_keyframe_request: None,
                layers: vec![],
                layer_count: 0,
            },
        );
        let mut recorded = false;
        // Participant outputs that expect this m-line.
        let mut attach_errors = vec![];
        let mut wrong_codec = vec![];
        for out in session
            .outputs
            .iter_mut()
            .filter(|o| o.scope() == Scope::Participant)
        {
            let expects = out.inputs.iter().any(|i| i.mline == mline && !i.released);
            if !expects {
                continue;
            }
            if !out.template.accepts(codec.media_type) {
                out.release(mline);
                wrong_codec.push(out.template.name.clone());
                continue;
            }
            match out.attach(mline, &chain.tee, session_id, &self.events_tx) {
                Ok(()) => {
                    recorded = true;
                    self.manifest
                        .tracks
                        .push(track_entry(&peer_id, codec, mline, out));
                    if let Some(input) = out.inputs.iter_mut().find(|i| i.mline == mline) {
                        input.manifest_track = Some(self.manifest.tracks.len() - 1);
                    }
                }
                Err(e) => attach_errors.push(format!("{}: {e}", out.template.name)),
            }
        }
        // A participant file that would take this track but has started without it (the track
        // came late, or with a renegotiation) leaves it to a file of its own.
        let participant_started_without = session.outputs.iter().any(|o| {
            o.scope() == Scope::Participant && o.started && o.template.accepts(codec.media_type)
        });
        let track_templates: Vec<Template> = self
            .settings
            .templates
            .iter()
            .filter(|t| t.scope == Scope::Track && t.accepts(codec.media_type))
            // A simulcast track's layers each get their own (see `on_layer_added`).
            .filter(|t| !(chain.layered && t.layers == Layers::Each))
            .cloned()
            .collect();
        for template in &track_templates {
            match self.add_track_output(session_id, mline, template) {
                Ok(()) => recorded = true,
                Err(e) => attach_errors.push(format!("{}: {e}", template.name)),
            }
        }
        if !recorded && participant_started_without {
            recorded = self.record_late_track(session_id, mline);
        }
        recorded |= self.feed_mixes(session_id, mline);
        for e in attach_errors {
            self.warn(format!("participant {participant}: {track_name}: {e}"));
        }
        if !recorded {
            let reason = if wrong_codec.is_empty() {
                format!(
                    "no configured template accepts {} ({})",
                    codec.media_type,
                    self.settings
                        .templates
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!(
                    "templates {} do not accept {}",
                    wrong_codec.join(", "),
                    codec.media_type
                )
            };
            self.skip_track(&peer_id, mline, codec.kind.as_str(), codec.name, reason);
        }
        self.request_keyframe(session_id, mline);
        self.check_outputs(session_id);
        self.save_manifest();
    }

    /// Decodes a track (once) and links it into every live mix that takes its kind. Returns
    /// whether any mix took it.
    pub(super) fn feed_mixes(&mut self, session_id: &str, mline: u32) -> bool {
        let Some(session) = self.sessions.get(session_id) else {
            return false;
        };
        let Some(track) = session.tracks.get(&mline) else {
            return false;
        };
        let (kind, codec, tee) = (track.kind, track.codec, track.chain.tee.clone());
        if !self.mixes.iter().any(|m| m.takes(kind)) {
            return false;
        }
        if gst::ElementFactory::find(codec.decoder).is_none() {
            self.warn(format!(
                "participant {}: {} is not in the mix: its decoder {} is not installed",
                session.name, codec.name, codec.decoder
            ));
            return false;
        }
        let (peer_id, label) = (session.peer_id.clone(), session.label.clone());
        let chain = match media::build_decoder(&self.pipeline, &tee, codec) {
            Ok(c) => c,
            Err(e) => {
                self.warn(format!(
                    "participant {}: cannot decode {}: {e}",
                    session.name, codec.name
                ));
                return false;
            }
        };
        if kind == Kind::Video {
            // The layout keeps each participant's aspect ratio, so it follows their video size.
            if let Some(pad) = chain.raw_tee.static_pad("sink") {
                let tx = self.events_tx.clone();
                let session = session_id.to_owned();
                pad.connect_notify(Some("caps"), move |pad, _| {
                    let Some(caps) = pad.current_caps() else {
                        return;
                    };
                    let Ok(info) = gst_video::VideoInfo::from_caps(&caps) else {
                        return;
                    };
                    let par = info.par();
                    let aspect = info.width() as f64 * par.numer() as f64
                        / (info.height().max(1) as f64 * par.denom().max(1) as f64);
                    tx.send(CallEvent::VideoSize {
                        session: session.clone(),
                        aspect,
                    });
                });
            }
        }
        let now = self.now_ms();
        let mut fed = false;
        let mut errors = vec![];
        for m in self.mixes.iter_mut().filter(|m| m.takes(kind)) {
            match m.attach(session_id, &peer_id, &label, kind, &chain.raw_tee, now) {
                Ok(()) => fed = true,
                Err(e) => errors.push(format!("mix {}: {e}", m.template.name)),
            }
        }
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.decoders.insert(mline, chain);
        }
        for e in errors {
            self.warn(e);
        }
        fed
    }

    /// Records a track with a new instance of a track-scope template.
    fn add_track_output(
        &mut self,
        session_id: &str,
        mline: u32,
        template: &Template,
    ) -> Result<(), String> {
        let session = self.sessions.get(session_id).ok_or("session gone")?;
        let track = session.tracks.get(&mline).ok_or("track gone")?;
        let (tee, layers) = (track.chain.tee.clone(), track.layers.clone());
        let name = format!("{}{mline}", track.kind.as_str());
        let index = self.add_track_output_from(session_id, mline, template, &tee, name)?;
        if let Some(entry) = self.manifest.tracks.get_mut(index) {
            entry.layers = layers;
        }
        Ok(())
    }

    /// Records what `tee` carries of a track (the track, or one of its simulcast layers) with
    /// a new instance of a track-scope template, as track `track_name`; returns its manifest
    /// entry's index.
    fn add_track_output_from(
        &mut self,
        session_id: &str,
        mline: u32,
        template: &Template,
        tee: &gst::Element,
        track_name: String,
    ) -> Result<usize, String> {
        let session = self.sessions.get(session_id).ok_or("session gone")?;
        let track = session.tracks.get(&mline).ok_or("track gone")?;
        let codec = track.codec;
        let (participant, peer_id) = (session.name.clone(), session.peer_id.clone());
        let vars = self.vars(&participant, Some((&track_name, codec.kind, codec.name)));
        let id = self.add_output(
            session_id,
            template,
            &vars,
            &[(mline, codec.kind)],
            Some(track_name),
        )?;
        let session = self.sessions.get_mut(session_id).ok_or("session gone")?;
        let out = session
            .outputs
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or("output gone")?;
        out.attach(mline, tee, session_id, &self.events_tx)?;
        self.manifest
            .tracks
            .push(track_entry(&peer_id, codec, mline, out));
        let index = self.manifest.tracks.len() - 1;
        if let Some(input) = out.inputs.first_mut() {
            input.manifest_track = Some(index);
        }
        Ok(index)
    }

    /// Records a track its participant's file could not take (it came after the file started)
    /// into a file of its own, with the late-track template. Returns whether it could.
    pub(super) fn record_late_track(&mut self, session_id: &str, mline: u32) -> bool {
        let Some(template) = self.settings.late_track_template.clone() else {
            return false;
        };
        let Some(session) = self.sessions.get(session_id) else {
            return false;
        };
        let Some(codec) = session.tracks.get(&mline).map(|t| t.codec) else {
            return false;
        };
        if !template.accepts(codec.media_type) {
            return false;
        }
        let participant = session.name.clone();
        match self.add_track_output(session_id, mline, &template) {
            Ok(()) => {
                self.warn(format!(
                    "participant {participant}: {}{mline} arrived after their file started; recorded to its own file with {}",
                    codec.kind.as_str(),
                    template.name
                ));
                true
            }
            Err(e) => {
                self.warn(format!(
                    "participant {participant}: {}{mline}: {e}",
                    codec.kind.as_str()
                ));
                false
            }
        }
    }

    pub(super) fn skip_track(
        &mut self,
        peer_id: &str,
        mline: u32,
        kind: &str,
        codec: &str,
        reason: String,
    ) {
        warn!(call = %self.settings.name, participant = %peer_id, mline, codec, "track skipped: {reason}");
        self.manifest.warnings.push(format!(
            "participant {peer_id}: track m-line {mline} ({codec}) skipped: {reason}"
        ));
        self.manifest.tracks.push(TrackEntry {
            participant: peer_id.to_owned(),
            kind: kind.to_owned(),
            codec: codec.to_lowercase(),
            mline,
            template: None,
            file: None,
            status: TrackStatus::Skipped,
            start_offset_ms: None,
            duration_ms: None,
            bytes: None,
            note: Some(reason),
            layers: vec![],
        });
        self.save_manifest();
    }

    pub(super) fn on_first_buffer(
        &mut self,
        session_id: &str,
        output: usize,
        mline: u32,
        running: gst::ClockTime,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if let Some(out) = session.outputs.iter_mut().find(|o| o.id == output) {
            out.first_input_at.get_or_insert_with(Instant::now);
            if let Some(input) = out
                .inputs
                .iter_mut()
                .find(|i| i.mline == mline && !i.released)
            {
                input.first = Some(running);
                if let Some(idx) = input.manifest_track {
                    if let Some(t) = self.manifest.tracks.get_mut(idx) {
                        t.start_offset_ms = Some((running.mseconds()) as i64);
                    }
                }
            }
        }
        self.check_outputs(session_id);
        self.save_manifest();
    }

    /// Starts outputs whose inputs are all there, or whose wait is over.
    pub(super) fn check_outputs(&mut self, session_id: &str) {
        let wait = self.settings.track_wait;
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let mut notes = vec![];
        let mut late = vec![];
        let mut started = false;
        for out in &mut session.outputs {
            if out.started {
                continue;
            }
            let waited = out.first_input_at.is_some_and(|t| t.elapsed() >= wait);
            if out.ready() || waited {
                for mline in out.start() {
                    if session.tracks.contains_key(&mline) {
                        // It arrived but had no keyframe yet: it gets a file of its own.
                        late.push(mline);
                    } else {
                        notes.push(format!(
                            "participant {}: m-line {mline} sent nothing within {:.1}s; {} started without it",
                            session.name,
                            wait.as_secs_f64(),
                            out.template.name
                        ));
                    }
                }
                info!(call = %self.settings.name, participant = %session.name, template = %out.template.name, "recording");
                started = true;
            }
        }
        if started {
            self.advance(super::CallState::Recording);
            // The participant's whole chain is linked and flowing: the most useful picture.
            self.graphs.dump(&self.pipeline, "playing");
        }
        for n in notes {
            self.warn(n);
        }
        late.dedup();
        for mline in late {
            self.record_late_track(session_id, mline);
        }
    }

    /// Asks the sender for a keyframe (PLI) on a video track, at most once per interval.
    pub(super) fn request_keyframe(&mut self, session_id: &str, mline: u32) {
        let interval = self.settings.keyframe_interval;
        let Some(track) = self
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.tracks.get_mut(&mline))
        else {
            return;
        };
        if track.kind != Kind::Video
            || track
                .last_keyframe_request
                .is_some_and(|t| t.elapsed() < interval)
        {
            return;
        }
        track.last_keyframe_request = Some(Instant::now());
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        track.chain.depay.send_event(event);
    }
}

impl Call {
    /// A layer of a simulcast track joined its chain: its elements stop with the track's, and
    /// templates that record every layer (`# layers: each`) get an instance for it.
    pub(super) fn on_layer_added(
        &mut self,
        session_id: &str,
        mline: u32,
        rid: Option<String>,
        layer: Layer,
    ) {
        let Some(track) = self
            .sessions
            .get_mut(session_id)
            .and_then(|s| s.tracks.get_mut(&mline))
        else {
            // The track was never taken (or is gone): nothing will read the layer.
            self.stop_in_background(layer.elements);
            return;
        };
        track.layer_count += 1;
        let (codec, serial) = (track.codec, track.layer_count);
        debug!(call = %self.settings.name, session = %session_id, mline, ?rid, "simulcast layer arrived");
        track.chain.elements.extend(layer.elements);
        let templates: Vec<Template> = self
            .settings
            .templates
            .iter()
            .filter(|t| t.scope == Scope::Track && t.layers == Layers::Each)
            .filter(|t| t.accepts(codec.media_type))
            .cloned()
            .collect();
        // The rid is a short token of letters, digits, `-` and `_` (media::rtp_header).
        let name = format!(
            "{}{mline}-{}",
            codec.kind.as_str(),
            rid.clone().unwrap_or_else(|| format!("layer{serial}"))
        );
        for template in &templates {
            let added =
                self.add_track_output_from(session_id, mline, template, &layer.tee, name.clone());
            match added {
                Ok(index) => {
                    if let Some(entry) = self.manifest.tracks.get_mut(index) {
                        entry.layers = vec![LayerSpan {
                            rid: rid.clone(),
                            width: None,
                            height: None,
                            from_ms: self
                                .pipeline
                                .current_running_time()
                                .map_or(0, |t| t.mseconds()),
                        }];
                    }
                }
                Err(e) => self.warn(format!("{name}: {}: {e}", template.name)),
            }
        }
        if !templates.is_empty() {
            self.request_keyframe(session_id, mline);
            self.save_manifest();
        }
    }

    /// A simulcast track is recorded from another layer: its manifest entries say which, from
    /// when.
    pub(super) fn on_layer_switched(&mut self, session_id: &str, mline: u32, change: LayerChange) {
        let span = LayerSpan {
            rid: change.rid,
            width: change.width,
            height: change.height,
            from_ms: change.at_ms,
        };
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        info!(call = %self.settings.name, participant = %session.name, mline, rid = ?span.rid, width = ?span.width, height = ?span.height, "simulcast track recorded from another layer");
        if let Some(track) = session.tracks.get_mut(&mline) {
            track.layers.push(span.clone());
        }
        let entries: Vec<usize> = session
            .outputs
            .iter()
            .flat_map(|o| o.inputs.iter())
            .filter(|i| i.mline == mline && !i.released)
            .filter_map(|i| i.manifest_track)
            .collect();
        for index in entries {
            if let Some(entry) = self.manifest.tracks.get_mut(index) {
                entry.layers.push(span.clone());
            }
        }
        self.save_manifest();
    }
}

/// The manifest entry for a track recorded by an output.
fn track_entry(peer_id: &str, codec: &media::Codec, mline: u32, out: &Output) -> TrackEntry {
    TrackEntry {
        participant: peer_id.to_owned(),
        kind: codec.kind.as_str().into(),
        codec: codec.name.into(),
        mline,
        template: Some(out.template.name.clone()),
        file: out.files.first().cloned(),
        status: TrackStatus::Recording,
        start_offset_ms: None,
        duration_ms: None,
        bytes: None,
        note: None,
        layers: vec![],
    }
}
