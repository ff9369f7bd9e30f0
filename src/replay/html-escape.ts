/**
 * Escaping for the replay page. Payloads come from the event log and are untrusted: `esc` for text and
 * attribute values, `scriptJson` for data inside `<script type="application/json">` (no `<` survives,
 * so `</script>` or `<!--` in a payload cannot end or change the element).
 */
const HTML: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => HTML[c]!);

export const scriptJson = (v: unknown): string =>
  JSON.stringify(v ?? null).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
