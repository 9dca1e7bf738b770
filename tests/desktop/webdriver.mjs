// A minimal W3C WebDriver client (Node 20 fetch), enough to drive the Tauri app through
// tauri-driver + WebKitWebDriver without extra dependencies.
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class Session {
  constructor(base, id) { this.base = base; this.id = id; }

  static async start(base, application) {
    const body = { capabilities: { alwaysMatch: { browserName: "wry", "tauri:options": { application } } } };
    const res = await request("POST", `${base}/session`, body, 60_000);
    return new Session(base, res.sessionId);
  }

  url(path) { return `${this.base}/session/${this.id}${path}`; }
  async find(css) { return (await request("POST", this.url("/element"), { using: "css selector", value: css }))[ELEMENT]; }
  async click(css) { await request("POST", this.url(`/element/${await this.find(css)}/click`), {}); }
  async clear(css) { await request("POST", this.url(`/element/${await this.find(css)}/clear`), {}); }
  async type(css, text) { await request("POST", this.url(`/element/${await this.find(css)}/value`), { text }); }
  async fill(css, text) { await this.clear(css); await this.type(css, text); }
  async run(script, ...args) { return request("POST", this.url("/execute/sync"), { script, args }); }
  async text(css) { return this.run("const n = document.querySelector(arguments[0]); return n ? n.textContent : null;", css); }
  /** Press and release one key (a WebDriver key code such as "\uE00C", Escape) where focus is. */
  async press(key) {
    const actions = [{ type: "key", id: "keyboard", actions: [{ type: "keyDown", value: key }, { type: "keyUp", value: key }] }];
    await request("POST", this.url("/actions"), { actions });
  }
  /** Perform W3C input `actions` (key chords such as Ctrl+V), then release every key. */
  async actions(actions) {
    await request("POST", this.url("/actions"), { actions });
    await request("DELETE", this.url("/actions"));
  }
  async windowRect() { return request("GET", this.url("/window/rect")); }
  async setWindowRect(rect) { return request("POST", this.url("/window/rect"), rect); }
  async screenshot() { return Buffer.from(await request("GET", this.url("/screenshot")), "base64"); }
  async close() { try { await request("DELETE", this.url(""), undefined, 10_000); } catch (_) { /* already gone */ } }

  /** Poll `script` (with `args`; truthy when done) until it succeeds or 20 s pass. */
  async waitFor(what, script, ...args) {
    const deadline = Date.now() + 20_000;
    let last;
    while (Date.now() < deadline) {
      try { last = await this.run(script, ...args); if (last) return last; } catch (e) { last = e.message; }
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
  }
}

export async function request(method, url, body, timeoutMs = 20_000) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}
