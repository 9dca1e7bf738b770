// The backend as the app exposes it (withGlobalTauri): commands, and the "chat-event" stream
// of core client events. Read from window.__TAURI__ when called, never at import.

export const hasBackend = () => !!window.__TAURI__;
export const invoke = (cmd, args, options) => window.__TAURI__.core.invoke(cmd, args, options);
export const listen = (name, handler) => window.__TAURI__.event.listen(name, handler);
