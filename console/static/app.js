// rexec console: a page of the server's own API (/scripts/v1, /plugins/v1),
// in plain JavaScript. Every URL is relative, so the page works under any
// path a reverse proxy gives it. The key is kept in this tab's session
// storage and sent as a bearer token: never in a URL.
'use strict';

(() => {
  const KEY = 'rexec.key';
  const MAX_LINES = 3000; // lines of output kept in the page while it follows
  const FLOOD_LINES = 300; // lines drawn of a frame's text that holds more than MAX_LINES
  const EARLIER = 64 * 1024; // bytes read by "Load earlier"
  const TAIL = 256 * 1024; // bytes of output shown when a run's page opens

  const main = document.getElementById('main');
  const live = document.getElementById('live');
  let key = sessionStorage.getItem(KEY) || '';
  let current = null; // the AbortController of the view on screen

  // --- DOM -------------------------------------------------------------

  // h makes an element: attrs are properties (on*: listeners), children
  // nodes or text (never HTML).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function show(...nodes) {
    main.replaceChildren(...nodes);
  }

  function announce(text) {
    live.textContent = text;
  }

  const fmtTime = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : '—');

  function fmtDuration(sec) {
    if (sec < 0) return '—';
    if (sec < 60) return `${sec} s`;
    if (sec < 3600) return `${Math.floor(sec / 60)} min ${sec % 60} s`;
    return `${Math.floor(sec / 3600)} h ${Math.floor((sec % 3600) / 60)} min`;
  }

  function duration(st) {
    if (!st.started) return '—';
    const end = st.ended_at || Math.floor(Date.now() / 1000);
    return fmtDuration(end - st.started);
  }

  // stateBadge is a run's state, and how a done run ended.
  function stateBadge(st) {
    let text = st.state;
    let cls = `state state-${st.state}`;
    if (st.state === 'done') {
      const ok = st.ended === 'exit' && st.exit_code === 0;
      cls += ok ? ' ok' : ' failed';
      text = st.ended === 'exit' ? `exit ${st.exit_code}` : st.ended || 'done';
    }
    return h('span', { class: cls }, text);
  }

  // --- The API ----------------------------------------------------------

  class APIError extends Error {
    constructor(status, code, message) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code || '';
    }
  }

  function headers(extra) {
    const hd = { ...extra };
    if (key) hd.Authorization = `Bearer ${key}`;
    return hd;
  }

  // api calls the API: the answer's JSON, or an APIError with its
  // errorcode and message. A refused key signs out.
  async function api(path, { method = 'GET', body, signal, trying = false } = {}) {
    const opts = { method, signal, cache: 'no-store', headers: headers() };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try {
      data = await r.json();
    } catch {
      // not JSON: the status says it
    }
    if (r.status === 401) {
      if (!trying) signOut('The server refused this key: sign in again.');
      throw new APIError(401, 'unauthorized', data?.error);
    }
    if (!r.ok || (data && data.success === false)) {
      throw new APIError(r.status, data?.errorcode, data?.error || r.statusText);
    }
    return data;
  }

  const sleep = (ms, signal) =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      });
    });

  // events reads the Server-Sent Events at path and hands each to on({id,
  // event, data}). A cut stream is opened again with the last id it saw
  // (Last-Event-ID: the server resumes there, with nothing lost or twice),
  // until signal aborts, on returns 'stop', or the server refuses it
  // (onRefused). Fetch, not EventSource: EventSource cannot send the key
  // but in the URL.
  async function events(path, { lastId = '', signal, on, onRefused, onState }) {
    let wait = 500;
    while (!signal.aborted) {
      try {
        const hd = headers({ Accept: 'text/event-stream' });
        if (lastId) hd['Last-Event-ID'] = lastId;
        const r = await fetch(path, { headers: hd, signal, cache: 'no-store' });
        if (r.status === 401) {
          signOut('The server refused this key: sign in again.');
          return;
        }
        if (!r.ok) {
          let d = null;
          try {
            d = await r.json();
          } catch {
            // no JSON
          }
          const err = new APIError(r.status, d?.errorcode, d?.error || r.statusText);
          if (r.status < 500 && r.status !== 429 && r.status !== 408) {
            onRefused?.(err);
            return;
          }
          throw err;
        }
        onState?.('open');
        wait = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        let ev = { data: '' };
        let slice = performance.now();
        for (;;) {
          // Reads of a stream that keeps up resolve at once, one after the
          // other: give the page its turn (rendering, input) every 15 ms.
          if (performance.now() - slice > 15) {
            await new Promise((resolve) => setTimeout(resolve));
            slice = performance.now();
          }
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line === '') {
              if (ev.event || ev.data) {
                if (ev.id) lastId = ev.id;
                if (on(ev) === 'stop') {
                  reader.cancel().catch(() => {});
                  return;
                }
              }
              ev = { data: '' };
              continue;
            }
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (field === 'id') ev.id = v;
            else if (field === 'event') ev.event = v;
            else if (field === 'data') ev.data = ev.data ? `${ev.data}\n${v}` : v;
          }
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      onState?.('reconnecting');
      await sleep(wait, signal);
      wait = Math.min(wait * 2, 10000);
    }
  }

  // --- Signing in ---------------------------------------------------------

  function signOut(message) {
    key = '';
    sessionStorage.removeItem(KEY);
    document.getElementById('nav').hidden = true;
    document.getElementById('signout').hidden = true;
    const back = location.hash && !location.hash.startsWith('#/signin') ? location.hash : '';
    if (back) sessionStorage.setItem('rexec.back', back);
    if (message) sessionStorage.setItem('rexec.why', message);
    // One render of the form: by the hash's change, or here when the hash
    // is already the form's.
    if (location.hash === '#/signin') route();
    else location.hash = '#/signin';
  }

  function viewSignIn() {
    const why = sessionStorage.getItem('rexec.why');
    sessionStorage.removeItem('rexec.why');
    const err = h('p', { class: 'error', role: 'alert' }, why || '');
    const input = h('input', { id: 'key', type: 'password', autocomplete: 'current-password', required: true, size: 40 });
    const form = h(
      'form',
      {
        class: 'signin card',
        onsubmit: async (e) => {
          e.preventDefault();
          key = input.value.trim();
          try {
            await api('scripts/v1/scripts', { trying: true }).catch((e2) => {
              if (e2.code === 'no_scripts') return null; // a server of plugins alone
              throw e2;
            });
            sessionStorage.setItem(KEY, key);
            signedIn();
            const back = sessionStorage.getItem('rexec.back') || '#/scripts';
            sessionStorage.removeItem('rexec.back');
            location.hash = back;
          } catch (e2) {
            key = '';
            err.textContent = e2.status === 401 ? 'This key is not one the server knows.' : e2.message;
            input.focus();
          }
        },
      },
      h('h2', null, 'Sign in'),
      h('label', { for: 'key' }, 'Admin token or guest key'),
      input,
      h('p', { class: 'hint' }, 'Kept in this tab only, until you sign out or close it.'),
      err,
      h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Sign in')),
    );
    show(form);
    input.focus();
  }

  function signedIn() {
    document.getElementById('nav').hidden = false;
    document.getElementById('signout').hidden = !key;
    api('plugins/v1').then(
      () => (document.getElementById('nav-plugins').hidden = false),
      () => (document.getElementById('nav-plugins').hidden = true),
    );
    // Machines: for the admin of a host of a fleet (a guest key may not
    // read the list).
    api('fleet/v1/machines').then(
      (d) => (document.getElementById('nav-machines').hidden = !d.fleet),
      () => (document.getElementById('nav-machines').hidden = true),
    );
  }

  // --- Scripts ------------------------------------------------------------

  // viewScripts lists the scripts, each with its form; select (from a deep
  // link, #/run/NAME?arg=...) opens that script's form, filled in.
  async function viewScripts(signal, select, params) {
    let data;
    try {
      data = await api('scripts/v1/scripts', { signal });
    } catch (e) {
      if (e.code === 'no_scripts') {
        show(h('h2', null, 'Scripts'), h('p', null, 'This server runs no scripts.'));
        return;
      }
      throw e;
    }
    const counts = h('p', { class: 'hint', id: 'active' });
    const cards = h('div', { class: 'cards' });
    for (const s of data.scripts) cards.append(scriptCard(s, s.name === select ? params : null));
    show(h('h2', null, 'Scripts'), counts, cards);
    if (select) {
      const form = document.getElementById(`run-${select}`);
      if (form) {
        form.closest('.card').classList.add('selected');
        form.scrollIntoView({ block: 'center' });
        (form.querySelector('input, textarea, button') || form).focus();
      } else {
        cards.before(h('p', { class: 'error', role: 'alert' }, `No script named ${select} for this key.`));
      }
    }
    // The runs queued and running, kept current by the event feed.
    const refresh = async () => {
      try {
        const st = await api('scripts/v1/status', { signal });
        const n = (o) => Object.keys(o || {}).length;
        counts.textContent = `${n(st.running)} running, ${n(st.queued)} queued.`;
      } catch {
        counts.textContent = '';
      }
    };
    refresh();
    followRuns('scripts/v1/events', signal, refresh);
  }

  // followRuns calls refresh, 200 ms after the last of a burst, when the
  // feed at path says a run was queued, started or ended.
  function followRuns(path, signal, refresh) {
    let timer = 0;
    events(path, {
      signal,
      on: (ev) => {
        if (ev.event === 'queued' || ev.event === 'running' || ev.event === 'done') {
          clearTimeout(timer);
          timer = setTimeout(refresh, 200);
        }
      },
    });
  }

  function scriptCard(s, prefill) {
    const id = `run-${s.name}`;
    const args = [];
    for (let i = 0; i < s.args; i++) {
      const aid = `${id}-arg${i}`;
      args.push(
        h('label', { for: aid }, `Argument ${i + 1}`),
        h('input', { id: aid, name: 'arg', value: prefill?.getAll('arg')[i] || '', autocomplete: 'off' }),
      );
    }
    const stdin = s.stdin
      ? [h('label', { for: `${id}-stdin` }, 'Standard input'), h('textarea', { id: `${id}-stdin`, name: 'stdin' })]
      : [];
    const at = h('input', { id: `${id}-at`, name: 'at', type: 'datetime-local', step: 1 });
    const err = h('p', { class: 'error', role: 'alert' });
    const facts = [
      s.args ? `${s.args} argument${s.args > 1 ? 's' : ''}` : 'no arguments',
      s.stdin && 'takes stdin',
      s.concurrency && `${s.concurrency} at once`,
      s.timeout && `timeout ${fmtDuration(s.timeout)}`,
      s.notify_only && 'starts no process',
    ].filter(Boolean);
    const form = h(
      'form',
      {
        id,
        onsubmit: async (e) => {
          e.preventDefault();
          err.textContent = '';
          const body = { name: s.name, args: [...form.querySelectorAll('input[name=arg]')].map((i) => i.value) };
          const sin = form.querySelector('textarea[name=stdin]');
          if (sin && sin.value !== '') body.stdin = sin.value;
          if (at.value) body.queue = Math.floor(new Date(at.value).getTime() / 1000);
          const btn = form.querySelector('button');
          btn.disabled = true;
          try {
            const run = await api('scripts/v1/run', { method: 'POST', body });
            location.hash = `#/runs/${encodeURIComponent(run.id)}`;
          } catch (e2) {
            err.textContent = e2.message;
          } finally {
            btn.disabled = false;
          }
        },
      },
      args,
      stdin,
      h('label', { for: `${id}-at` }, 'Start at (optional)'),
      at,
      err,
      h('div', { class: 'row' }, h('button', { type: 'submit' }, `Run ${s.name}`)),
    );
    return h(
      'section',
      { class: 'card', 'aria-labelledby': `${id}-title` },
      h('h3', { id: `${id}-title` }, s.name),
      h('ul', { class: 'facts' }, facts.map((f) => h('li', null, f))),
      form,
    );
  }

  // --- A run's page -------------------------------------------------------

  const encoder = new TextEncoder();

  // utf8len is the number of bytes of s in UTF-8.
  function utf8len(s) {
    if (s.length > 4096) return encoder.encode(s).length; // native: faster on a long text
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
        n += 4;
        i++;
      } else n += 3;
    }
    return n;
  }

  // paint appends text, a part of one line, to el, in the colours of state
  // ({sgr, cr}), which it moves on: SGR sequences change the colours, other
  // escape sequences are dropped, and text after a carriage return redraws
  // the line (as a progress bar does).
  function paint(el, text, state) {
    const re = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[@-_]|\r|[^\x1b\r]+|\x1b/g;
    let m;
    while ((m = re.exec(text))) {
      const t = m[0];
      if (t === '\r') state.cr = true;
      else if (m[2] === 'm') applySGR(state, m[1]);
      else if (t[0] !== '\x1b') {
        if (state.cr) {
          el.replaceChildren();
          state.cr = false;
        }
        el.append(span(t, state.sgr));
      }
    }
  }

  function span(t, s) {
    const cls = [];
    if (s.b) cls.push('a-b');
    if (s.d) cls.push('a-d');
    if (s.i) cls.push('a-i');
    if (s.u) cls.push('a-u');
    if (typeof s.fg === 'number') cls.push(`f${s.fg}`);
    if (typeof s.bg === 'number') cls.push(`b${s.bg}`);
    if (!cls.length && !s.fgRGB && !s.bgRGB) return document.createTextNode(t);
    const el = h('span', { class: cls.join(' ') }, t);
    if (s.fgRGB) el.style.color = s.fgRGB; // CSSOM: the page's CSP allows it
    if (s.bgRGB) el.style.backgroundColor = s.bgRGB;
    return el;
  }

  // applySGR applies the parameters of an SGR sequence (ESC [ ... m) to
  // state.sgr.
  function applySGR(state, params) {
    const p = params === '' ? [0] : params.split(';').map((x) => parseInt(x || '0', 10));
    for (let i = 0; i < p.length; i++) {
      const c = p[i];
      const s = state.sgr;
      if (c === 0) state.sgr = {};
      else if (c === 1) s.b = true;
      else if (c === 2) s.d = true;
      else if (c === 3) s.i = true;
      else if (c === 4) s.u = true;
      else if (c === 22) s.b = s.d = false;
      else if (c === 23) s.i = false;
      else if (c === 24) s.u = false;
      else if (c >= 30 && c <= 37) [s.fg, s.fgRGB] = [c - 30, ''];
      else if (c >= 90 && c <= 97) [s.fg, s.fgRGB] = [c - 90 + 8, ''];
      else if (c === 39) [s.fg, s.fgRGB] = [undefined, ''];
      else if (c >= 40 && c <= 47) [s.bg, s.bgRGB] = [c - 40, ''];
      else if (c >= 100 && c <= 107) [s.bg, s.bgRGB] = [c - 100 + 8, ''];
      else if (c === 49) [s.bg, s.bgRGB] = [undefined, ''];
      else if ((c === 38 || c === 48) && (p[i + 1] === 5 || p[i + 1] === 2)) {
        let idx;
        let rgb = '';
        if (p[i + 1] === 5) {
          const n = p[i + 2] | 0;
          if (n < 16) idx = n;
          else rgb = color256(n);
          i += 2;
        } else {
          rgb = `rgb(${p[i + 2] | 0}, ${p[i + 3] | 0}, ${p[i + 4] | 0})`;
          i += 4;
        }
        if (c === 38) [s.fg, s.fgRGB] = [idx, rgb];
        else [s.bg, s.bgRGB] = [idx, rgb];
      }
    }
  }

  // Terminal shows a run's output: ANSI colours, carriage returns that
  // redraw a line, at most MAX_LINES lines while it follows (the earliest
  // leave the page, and "Load earlier" reads them again by offset), and DOM
  // updates batched to one per animation frame.
  class Terminal {
    constructor(pre, onChange) {
      this.pre = pre;
      this.onChange = onChange;
      this.pending = '';
      this.frame = 0;
      this.lines = []; // {el, bytes, closed}: the lines on the page
      this.state = { sgr: {}, cr: false };
      this.start = 0; // the offset of the first line's first byte
      this.follow = true;
      pre.addEventListener('scroll', () => {
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        if (atEnd !== this.follow) {
          this.follow = atEnd;
          this.onChange();
        }
      });
    }

    write(text) {
      this.pending += text;
      if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    }

    // flush puts the pending text on the page: of a flood, only the lines
    // that will stay; the rest is counted, and read for its colours.
    flush() {
      this.frame = 0;
      let text = this.pending;
      this.pending = '';
      const cap = this.follow ? MAX_LINES : MAX_LINES * 4;
      // A frame's text of more lines than the page keeps is a flood: of it
      // only the last FLOOD_LINES lines are drawn (and the page fills up
      // again when the flood slows), so that no frame redraws thousands.
      let cut = text.length;
      for (let n = 0; n < cap && cut > 0; n++) {
        cut = text.lastIndexOf('\n', cut - 1);
        if (cut < 0) break;
      }
      if (cut > 0) {
        cut = text.length;
        for (let n = 0; n < FLOOD_LINES && cut > 0; n++) cut = text.lastIndexOf('\n', cut - 1);
      }
      if (cut > 0) {
        const skipped = text.slice(0, cut + 1);
        for (const l of this.lines) this.start += l.bytes;
        this.lines = [];
        this.pre.replaceChildren();
        this.start += utf8len(skipped);
        for (const m of skipped.matchAll(/\x1b\[([0-9;]*)m/g)) applySGR(this.state, m[1]);
        this.state.cr = false;
        text = text.slice(cut + 1);
      }
      this.append(text);
      while (this.lines.length > cap) {
        const l = this.lines.shift();
        this.start += l.bytes;
        l.el.remove();
      }
      if (this.follow) this.pre.scrollTop = this.pre.scrollHeight;
      this.onChange();
    }

    openLine() {
      const l = { el: h('div', { class: 'line' }), bytes: 0, closed: false };
      this.pre.append(l.el);
      this.lines.push(l);
      return l;
    }

    append(text) {
      let l = this.lines[this.lines.length - 1];
      if (!l || l.closed) l = this.openLine();
      let i = 0;
      for (;;) {
        const nl = text.indexOf('\n', i);
        const seg = nl < 0 ? text.slice(i) : text.slice(i, nl + 1);
        l.bytes += utf8len(seg);
        paint(l.el, nl < 0 ? seg : seg.replace(/\r?\n$/, ''), this.state);
        if (nl < 0) return;
        l.closed = true;
        this.state.cr = false;
        i = nl + 1;
        if (i === text.length) return;
        l = this.openLine();
      }
    }

    // prepend puts earlier output, whole lines read by offset ([text,
    // bytes] each), before the first line, in the default colours.
    prepend(lines) {
      const frag = document.createDocumentFragment();
      const added = [];
      let bytes = 0;
      for (const [text, n] of lines) {
        const el = h('div', { class: 'line' });
        paint(el, text, { sgr: {}, cr: false });
        frag.append(el);
        added.push({ el, bytes: n, closed: true });
        bytes += n;
      }
      this.pre.insertBefore(frag, this.pre.firstChild);
      this.lines.unshift(...added);
      this.start -= bytes;
      this.onChange();
    }
  }

  // color256 is the RGB of a colour of xterm's 256 above the first 16.
  function color256(n) {
    if (n >= 232) {
      const v = 8 + (n - 232) * 10;
      return `rgb(${v}, ${v}, ${v})`;
    }
    n -= 16;
    const c = (x) => (x ? 55 + x * 40 : 0);
    return `rgb(${c(Math.floor(n / 36))}, ${c(Math.floor(n / 6) % 6)}, ${c(n % 6)})`;
  }

  async function viewRun(signal, id) {
    const base = `scripts/v1/status/${encodeURIComponent(id)}`;
    let st = await api(base, { signal });
    const badge = h('span');
    const meta = h('dl', { class: 'meta' });
    const bar = h('progress', { max: 100, value: 0, id: 'progress', 'aria-label': 'Progress' });
    const task = h('p', { class: 'hint', id: 'task' });
    const progress = h('div', { class: 'progress', hidden: true }, bar, task);
    const result = h('div');
    const err = h('p', { class: 'error', role: 'alert' });
    const cancel = h('button', { type: 'button', class: 'danger', onclick: () => doCancel() }, 'Cancel');
    const rerun = h('button', { type: 'button', class: 'secondary', onclick: () => doRerun() }, 'Run again');
    const pre = h('pre', { class: 'terminal', id: 'output', tabindex: 0, 'aria-label': 'Output', 'aria-busy': 'true' });
    const earlier = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => loadEarlier() }, 'Load earlier');
    const followBtn = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => followAgain() }, 'Follow');
    const outState = h('span', { id: 'output-state' });
    const term = new Terminal(pre, () => {
      earlier.hidden = term.start <= 0;
      followBtn.hidden = term.follow || st.state === 'done';
    });

    function render() {
      badge.replaceChildren(stateBadge(st));
      const rows = [
        ['Script', h('a', { href: `#/run/${encodeURIComponent(st.name)}?${new URLSearchParams(st.args.map((a) => ['arg', a]))}` }, st.name)],
        ['Arguments', st.args.length ? st.args.join(' ') : 'none'],
        ['Started by', st.who || 'admin'],
        ...(st.host ? [['Host', st.host]] : []),
        ['Queued', fmtTime(st.queued)],
        ['Started', fmtTime(st.started)],
        ['Duration', duration(st)],
      ];
      if (st.state === 'queued' && st.waiting) rows.push(['Waiting', st.waiting]);
      if (st.output_truncated) rows.push(['Output', "cut at the server's --max-output: the rest was not kept"]);
      if (st.state === 'done') {
        rows.push(['Ended', st.ended === 'exit' ? `exit code ${st.exit_code}` : `${st.ended}${st.signal ? ` (${st.signal})` : ''}`]);
      }
      meta.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
      const p = st.progress || {};
      const hasProgress = p.task_total > 0 || p.subtask_percent > 0 || p.task_title;
      progress.hidden = !hasProgress || st.state !== 'running';
      if (hasProgress) {
        const whole = p.task_total > 0 ? ((Math.max(p.task - 1, 0) + (p.subtask_percent || 0) / 100) / p.task_total) * 100 : p.subtask_percent || 0;
        bar.value = Math.min(100, Math.max(0, whole));
        task.textContent = [
          p.task_total > 0 ? `[${p.task}/${p.task_total}]` : '',
          p.task_title || '',
          p.subtask_title ? `· ${p.subtask_title}` : '',
          p.subtask_percent ? `${p.subtask_percent}%` : '',
        ].filter(Boolean).join(' ');
      }
      cancel.hidden = st.state === 'done';
      result.replaceChildren();
      if (st.result !== undefined && st.result !== null) {
        result.append(h('h3', null, 'Result'), h('pre', { class: 'result', id: 'result' }, JSON.stringify(st.result, null, 2)));
      }
      term.onChange();
    }

    async function refresh() {
      try {
        st = await api(base, { signal });
        render();
      } catch (e) {
        if (!signal.aborted) err.textContent = e.message;
      }
    }

    async function doCancel() {
      cancel.disabled = true;
      err.textContent = '';
      try {
        await api(`scripts/v1/cancel/${encodeURIComponent(id)}`, { method: 'POST' });
        announce('Cancel sent.');
        refresh();
      } catch (e) {
        err.textContent = e.message;
      } finally {
        cancel.disabled = false;
      }
    }

    async function doRerun() {
      err.textContent = '';
      try {
        const run = await api('scripts/v1/run', { method: 'POST', body: { name: st.name, args: st.args } });
        location.hash = `#/runs/${encodeURIComponent(run.id)}`;
      } catch (e) {
        err.textContent = e.message;
      }
    }

    function followAgain() {
      term.follow = true;
      pre.scrollTop = pre.scrollHeight;
      term.onChange();
    }

    async function loadEarlier() {
      const to = term.start;
      const from = Math.max(0, to - EARLIER);
      earlier.disabled = true;
      try {
        const r = await fetch(`scripts/v1/output/${encodeURIComponent(id)}?offset=${from}&limit=${to - from}`, {
          headers: headers(),
          signal,
          cache: 'no-store',
        });
        if (!r.ok) throw new APIError(r.status, '', r.statusText);
        const bytes = new Uint8Array(await r.arrayBuffer());
        let at = 0;
        if (from > 0) at = bytes.indexOf(10) + 1; // a line cut at its start waits for the next load
        const dec = new TextDecoder();
        const lines = [];
        while (at < bytes.length) {
          let nl = bytes.indexOf(10, at);
          if (nl < 0) nl = bytes.length - 1;
          lines.push([dec.decode(bytes.subarray(at, nl + 1)).replace(/\r?\n$/, ''), nl + 1 - at]);
          at = nl + 1;
        }
        const scrolled = pre.scrollHeight - pre.scrollTop;
        term.prepend(lines);
        pre.scrollTop = pre.scrollHeight - scrolled; // the lines on screen stay there
      } catch (e) {
        if (!signal.aborted) err.textContent = `Earlier output: ${e.message}`;
      } finally {
        earlier.disabled = false;
      }
    }

    show(
      h('h2', null, `Run ${id} `, badge),
      err,
      meta,
      progress,
      h('div', { class: 'row' }, cancel, rerun),
      h('div', { class: 'output-bar' }, h('strong', null, 'Output'), outState, earlier, followBtn),
      pre,
      result,
    );
    render();

    // The output, from the last TAIL bytes, live until the run's end.
    let from = 0;
    if (st.output_size > TAIL) {
      from = st.output_size - TAIL;
      term.start = from;
      let skipFirst = true; // the first line is cut at its start
      const write = term.write.bind(term);
      term.write = (text) => {
        if (skipFirst) {
          const nl = text.indexOf('\n');
          if (nl < 0) {
            term.start += utf8len(text);
            return;
          }
          term.start += utf8len(text.slice(0, nl + 1));
          text = text.slice(nl + 1);
          skipFirst = false;
        }
        write(text);
      };
    }
    events(`scripts/v1/output/${encodeURIComponent(id)}?follow=1`, {
      signal,
      lastId: from ? String(from) : '',
      onState: (s) => (outState.textContent = s === 'reconnecting' ? '(reconnecting…)' : ''),
      onRefused: (e) => (outState.textContent = `(${e.message})`),
      on: (ev) => {
        if (ev.event === 'output') term.write(JSON.parse(ev.data));
        else if (ev.event === 'end') {
          pre.setAttribute('aria-busy', 'false');
          outState.textContent = '(ended)';
          refresh();
          return 'stop';
        }
        return undefined;
      },
    });
    // Its state and progress, from the event feed; read again each time
    // the feed (re)opens, for what happened before it did.
    events(`scripts/v1/events?name=${encodeURIComponent(st.name)}`, {
      signal,
      onState: (state) => state === 'open' && refresh(),
      on: (ev) => {
        let e;
        try {
          e = JSON.parse(ev.data);
        } catch {
          return undefined;
        }
        if (e.run !== id) return undefined;
        if (ev.event === 'progress' && e.progress) {
          st.progress = {
            task: e.progress.task,
            task_total: e.progress.task_total,
            task_title: e.progress.task_title,
            subtask_percent: e.progress.subtask_percent,
            subtask_title: e.progress.subtask_title,
          };
          render();
        } else if (ev.event === 'running' || ev.event === 'done') {
          if (ev.event === 'done') announce(`Run ${id} ended.`);
          refresh();
        }
        return undefined;
      },
    });
    // The duration of a running run moves on.
    const tick = setInterval(() => st.state === 'running' && render(), 1000);
    signal.addEventListener('abort', () => clearInterval(tick));
  }

  // --- History ------------------------------------------------------------

  async function viewHistory(signal, params) {
    const q = new URLSearchParams();
    for (const k of ['name', 'state', 'since', 'until', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
    q.set('limit', '50');
    const scripts = await api('scripts/v1/scripts', { signal }).then((d) => d.scripts.map((s) => s.name), () => []);
    const toLocal = (unix) => (unix ? new Date(unix * 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19) : '');
    const name = h('select', { id: 'f-name', name: 'name' }, h('option', { value: '' }, 'all'),
      scripts.map((n) => h('option', { value: n, selected: n === params.get('name') }, n)));
    const state = h('select', { id: 'f-state', name: 'state' },
      ['', 'queued', 'running', 'done'].map((s) => h('option', { value: s, selected: s === (params.get('state') || '') }, s || 'any')));
    const since = h('input', { id: 'f-since', type: 'datetime-local', step: 1, value: toLocal(+params.get('since')) });
    const until = h('input', { id: 'f-until', type: 'datetime-local', step: 1, value: toLocal(+params.get('until')) });
    const filters = h(
      'form',
      {
        class: 'filters',
        onsubmit: (e) => {
          e.preventDefault();
          const p = new URLSearchParams();
          if (name.value) p.set('name', name.value);
          if (state.value) p.set('state', state.value);
          if (since.value) p.set('since', Math.floor(new Date(since.value).getTime() / 1000));
          if (until.value) p.set('until', Math.floor(new Date(until.value).getTime() / 1000));
          location.hash = `#/history?${p}`;
        },
      },
      h('div', null, h('label', { for: 'f-name' }, 'Script'), name),
      h('div', null, h('label', { for: 'f-state' }, 'State'), state),
      h('div', null, h('label', { for: 'f-since' }, 'Since'), since),
      h('div', null, h('label', { for: 'f-until' }, 'Until'), until),
      h('div', null, h('button', { type: 'submit' }, 'Filter')),
    );
    const head = h('tr');
    const body = h('tbody');
    const pager = h('div', { class: 'row' });
    const table = h('div', { class: 'table-wrap' }, h('table', { id: 'history' }, h('thead', null, head), body));
    show(h('h2', null, 'History'), filters, table, pager);

    async function load() {
      const data = await api(`scripts/v1/runs?${q}`, { signal });
      // The host column, when a run of the page ran in a fleet.
      const hosts = data.runs.some((st) => st.host);
      const cols = ['Run', 'Script', 'State', ...(hosts ? ['Host'] : []), 'Started', 'Duration', 'Started by'];
      head.replaceChildren(...cols.map((c) => h('th', { scope: 'col' }, c)));
      body.replaceChildren(
        ...data.runs.map((st) =>
          h('tr', { 'data-run': st.id },
            h('td', null, h('a', { href: `#/runs/${encodeURIComponent(st.id)}` }, st.id)),
            h('td', null, st.name),
            h('td', null, stateBadge(st)),
            hosts && h('td', { class: 'host' }, st.host || '—'),
            h('td', null, fmtTime(st.started || st.queued)),
            h('td', null, duration(st)),
            h('td', null, st.who || 'admin'))),
      );
      if (!data.runs.length) body.append(h('tr', null, h('td', { colSpan: cols.length }, 'No runs.')));
      pager.replaceChildren();
      if (params.get('cursor')) {
        const first = new URLSearchParams(params);
        first.delete('cursor');
        pager.append(h('a', { class: 'button secondary', href: `#/history?${first}` }, 'Newest'));
      }
      if (data.next_cursor) {
        const next = new URLSearchParams(params);
        next.set('cursor', data.next_cursor);
        pager.append(h('a', { class: 'button secondary', href: `#/history?${next}`, id: 'older' }, 'Older'));
      }
    }
    await load();
    if (!params.get('cursor')) {
      // The first page follows the feed: a run that starts or ends shows.
      const name = params.get('name');
      followRuns(`scripts/v1/events${name ? `?name=${encodeURIComponent(name)}` : ''}`, signal, () => load().catch(() => {}));
    }
  }

  // --- Plugins ------------------------------------------------------------

  async function viewPlugins(signal) {
    const data = await api('plugins/v1', { signal });
    const list = [];
    for (const p of data.plugins) {
      const comps = p.components.filter((c) => c.type === 'cmd');
      list.push(h('section', { class: 'card' },
        h('h3', null, p.name || p.id),
        p.description && h('p', { class: 'hint' }, p.description),
        comps.length ? comps.map(commandForm) : h('p', { class: 'hint' }, 'No command this key may call.')));
    }
    show(h('h2', null, 'Plugins'), list.length ? h('div', { class: 'cards' }, list) : h('p', null, 'No plugins.'));
  }

  function commandForm(c) {
    const id = `call-${c.id.replace(/[^A-Za-z0-9_-]/g, '-')}`;
    const method = h('input', { id: `${id}-method`, required: true, autocomplete: 'off' });
    const params = h('textarea', { id: `${id}-params`, placeholder: '[] or {}' });
    const out = h('pre', { class: 'result', hidden: true, 'aria-live': 'polite' });
    const err = h('p', { class: 'error', role: 'alert' });
    return h('form', {
      id,
      onsubmit: async (e) => {
        e.preventDefault();
        err.textContent = '';
        out.hidden = true;
        let p;
        if (params.value.trim()) {
          try {
            p = JSON.parse(params.value);
          } catch {
            err.textContent = 'Params must be JSON: an array or an object.';
            return;
          }
        }
        try {
          const r = await api('plugins/v1/call', { method: 'POST', body: { component: c.id, method: method.value, params: p } });
          out.textContent = JSON.stringify(r.result, null, 2);
          out.hidden = false;
        } catch (e2) {
          err.textContent = e2.message;
        }
      },
    },
    h('p', null, h('strong', null, c.name || c.id), ' ', h('code', null, c.id)),
    h('label', { for: method.id }, 'Method'), method,
    h('label', { for: params.id }, 'Params (JSON)'), params,
    err,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Call')),
    out);
  }

  // --- Machines -----------------------------------------------------------

  // viewMachines lists the fleet's hosts, as GET /fleet/v1/machines does,
  // and keeps the list current while it is shown.
  async function viewMachines(signal) {
    const body = h('tbody');
    const err = h('p', { class: 'error', role: 'alert' });
    const title = h('h2', null, 'Machines');
    const cols = ['Host', 'State', 'Address', 'Labels', 'Scripts', 'Processes', 'Version', 'Last heartbeat'];
    show(title, err, h('div', { class: 'table-wrap' }, h('table', { id: 'machines' },
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, c)))), body)));

    async function load() {
      const data = await api('fleet/v1/machines', { signal });
      title.textContent = data.fleet ? `Machines of the fleet ${data.fleet}` : 'Machines';
      body.replaceChildren(
        ...data.machines.map((m) =>
          h('tr', { 'data-host': m.name },
            h('td', null, m.name, m.name === data.host ? ' (this host)' : ''),
            h('td', null, h('span', { class: `state ${m.up ? 'state-done ok' : 'state-done failed'}` }, m.up ? 'up' : 'down')),
            h('td', null, m.address || '—'),
            h('td', null, m.labels.length ? m.labels.join(', ') : '—'),
            h('td', null, m.scripts.length ? m.scripts.join(', ') : '—'),
            h('td', null, m.slots_max ? `${m.slots_used} of ${m.slots_max}` : String(m.slots_used)),
            h('td', null, m.version || '—'),
            h('td', null, new Date(m.last_heartbeat).toLocaleString()))),
      );
      err.textContent = '';
    }
    await load();
    // Heartbeats come several times a second, and a host is down within
    // seconds: look again every 2 s, until the page changes.
    const timer = setInterval(() => load().catch((e) => {
      if (!signal.aborted) err.textContent = e.message;
    }), 2000);
    signal.addEventListener('abort', () => clearInterval(timer));
  }

  // --- Routing ------------------------------------------------------------

  async function route() {
    current?.abort();
    current = new AbortController();
    const { signal } = current;
    const hash = location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').map(decodeURIComponent);
    const section = parts[0] || 'scripts';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.section === (section === 'runs' || section === 'run' ? 'scripts' : section)) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (section === 'signin') return viewSignIn();
    try {
      switch (section) {
        case 'runs':
          await viewRun(signal, parts[1]);
          break;
        case 'run':
          await viewScripts(signal, parts[1], params);
          break;
        case 'history':
          await viewHistory(signal, params);
          break;
        case 'plugins':
          await viewPlugins(signal);
          break;
        case 'machines':
          await viewMachines(signal);
          break;
        default:
          await viewScripts(signal);
      }
    } catch (e) {
      if (signal.aborted || e.status === 401) return;
      show(h('h2', null, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }

  // start finds out whether the server needs a key, and shows the page.
  async function start() {
    document.getElementById('signout').addEventListener('click', () => signOut(''));
    window.addEventListener('hashchange', () => {
      route();
      main.focus({ preventScroll: true });
    });
    try {
      await api('scripts/v1/scripts').catch((e) => {
        if (e.code === 'no_scripts') return null;
        throw e;
      });
      signedIn();
    } catch (e) {
      if (e.status !== 401) show(h('p', { class: 'error', role: 'alert' }, e.message));
      return; // signOut showed the sign-in form
    }
    route();
  }

  start();
})();
