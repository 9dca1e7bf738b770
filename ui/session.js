// Who we are in the room, shared by the views: the nickname in use (chosen in a form or the
// nickname dialog, then as the core confirms it) and, while hosting, the room's HostInfo.

export const session = {
  nick: "",
  hosting: null,
};
