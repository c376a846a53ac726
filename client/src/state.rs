//! The room view's state and how server messages change it. Pure: no browser API, so it is
//! tested natively.

use relaycast_shared::{PeerId, PeerInfo, RoomMessage, ServerMsg};

/// The connection as the person sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Online,
    Offline,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    pub status: Status,
    pub me: Option<PeerId>,
    pub peers: Vec<PeerInfo>,
    /// Room messages in sequence order, each once.
    pub messages: Vec<RoomMessage>,
    /// The last error the server reported, for display.
    pub error: Option<String>,
}

impl Default for RoomState {
    fn default() -> Self {
        Self { status: Status::Connecting, me: None, peers: Vec::new(), messages: Vec::new(), error: None }
    }
}

/// What can happen to the view.
#[derive(Debug, Clone)]
pub enum Action {
    Server(ServerMsg),
    Disconnected,
}

impl RoomState {
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Disconnected => self.status = Status::Offline,
            Action::Server(msg) => self.server(msg),
        }
    }

    fn server(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { peer_id, .. } => {
                self.status = Status::Online;
                self.me = Some(peer_id);
            }
            ServerMsg::Joined { peers, .. } => self.peers = peers,
            ServerMsg::HistoryReset { .. } => self.messages.clear(),
            ServerMsg::History { messages, .. } => messages.into_iter().for_each(|m| self.add(m)),
            ServerMsg::Message { message, .. } => self.add(message),
            ServerMsg::PeerJoined { peer, .. } => {
                if !self.peers.iter().any(|p| p.id == peer.id) {
                    self.peers.push(peer);
                }
            }
            ServerMsg::PeerLeft { peer_id, .. } => self.peers.retain(|p| p.id != peer_id),
            ServerMsg::Error { code, message, .. } => self.error = Some(format!("{code}: {message}")),
            ServerMsg::Ack { .. }
            | ServerMsg::HistoryTruncated { .. }
            | ServerMsg::Left { .. }
            | ServerMsg::Signal { .. } => {}
        }
    }

    /// Keep messages ordered by sequence and drop duplicates (history and live may overlap
    /// after a reconnect).
    fn add(&mut self, message: RoomMessage) {
        match self.messages.binary_search_by_key(&message.seq, |m| m.seq) {
            Ok(_) => {}
            Err(at) => self.messages.insert(at, message),
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.messages.last().map(|m| m.seq).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_shared::*;

    fn msg(seq: u64) -> RoomMessage {
        RoomMessage {
            seq,
            from: PeerId::try_from("p").unwrap(),
            name: DisplayName::try_from("n").unwrap(),
            id: ClientMsgId::try_from(format!("i{seq}")).unwrap(),
            at: 0,
            body: Body::Chat { text: ChatText::try_from("t").unwrap() },
        }
    }

    fn room() -> RoomName {
        RoomName::try_from("r").unwrap()
    }

    #[test]
    fn history_and_live_merge_in_order_without_duplicates() {
        let mut s = RoomState::default();
        s.apply(Action::Server(ServerMsg::History { room: room(), messages: vec![msg(1), msg(2)], done: true }));
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(2) }));
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(4) }));
        s.apply(Action::Server(ServerMsg::Message { room: room(), message: msg(3) }));
        assert_eq!(s.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(s.last_seq(), 4);
    }

    #[test]
    fn presence_and_status() {
        let mut s = RoomState::default();
        assert_eq!(s.status, Status::Connecting);
        let peer = PeerInfo { id: PeerId::try_from("b").unwrap(), name: DisplayName::try_from("B").unwrap() };
        s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer: peer.clone() }));
        s.apply(Action::Server(ServerMsg::PeerJoined { room: room(), peer: peer.clone() }));
        assert_eq!(s.peers.len(), 1);
        s.apply(Action::Server(ServerMsg::PeerLeft { room: room(), peer_id: peer.id }));
        assert!(s.peers.is_empty());
        s.apply(Action::Disconnected);
        assert_eq!(s.status, Status::Offline);
    }
}
