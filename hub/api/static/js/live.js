// Live updates: the hub's event stream (/api/stream, server-sent events) when it has one,
// polling every 2 s when it does not or while the stream is down.

const POLL_MS = 2000;
const RETRY_STREAM_MS = 30000;

export class Live {
  constructor(onMode) {
    this.subscribers = new Set();
    this.mode = "starting";
    this.onMode = onMode;
    this.timer = null;
    this.source = null;
    this.pending = new Set();
    this.customer = null;
  }

  /** Call ``refresh(eventType, data)`` on each of ``events`` (and on every poll). */
  subscribe(events, refresh) {
    const sub = { events: new Set(events), refresh };
    this.subscribers.add(sub);
    return () => this.subscribers.delete(sub);
  }

  start(customer) {
    this.customer = customer;
    this.stop();
    this.openStream();
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearInterval(this.timer);
    this.timer = null;
  }

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.onMode(mode);
  }

  openStream() {
    if (typeof EventSource === "undefined") return this.poll();
    const query = this.customer ? `?customerId=${encodeURIComponent(this.customer)}` : "";
    const source = new EventSource(`/api/stream${query}`);
    this.source = source;
    source.onopen = () => {
      clearInterval(this.timer);
      this.timer = null;
      this.setMode("stream");
      this.dispatch(null, null); // catch up on what happened while it was down
    };
    source.onerror = () => {
      if (this.source !== source) return;
      this.poll();
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        setTimeout(() => {
          if (!this.source && this.timer) this.openStream();
        }, RETRY_STREAM_MS);
      }
    };
    for (const type of ["usage", "alert", "recommendation"]) {
      source.addEventListener(type, (ev) => {
        let data = null;
        try {
          data = JSON.parse(ev.data);
        } catch {
          data = null;
        }
        this.dispatch(type, data);
      });
    }
  }

  poll() {
    this.setMode("poll");
    if (this.timer) return;
    this.timer = setInterval(() => this.dispatch(null, null), POLL_MS);
  }

  /** Run the subscribers of ``type`` (all of them for a poll), at most once per frame each. */
  dispatch(type, data) {
    for (const sub of this.subscribers) {
      if (type !== null && !sub.events.has(type)) continue;
      if (this.pending.has(sub)) continue;
      this.pending.add(sub);
      requestAnimationFrame(() => {
        this.pending.delete(sub);
        if (this.subscribers.has(sub)) sub.refresh(type, data);
      });
    }
  }
}
