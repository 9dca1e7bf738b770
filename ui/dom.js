// DOM helpers shared by the views. Text only ever goes in through textContent.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Shows (or with no message clears) a form's error line.
export function showError(id, message) { $(id).textContent = message || ""; }
