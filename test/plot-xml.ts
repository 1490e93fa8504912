// A strict little XML well-formedness check for the SVG and HTML tests (independent of ts/): balanced tags, one root
// element, quoted attributes without raw '<' or stray '&', text without raw '<' or stray '&'.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
}

const ENTITY = /&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);/g;

function checkText(s: string, where: string): void {
  if (s.includes('<')) throw new Error(`raw '<' in ${where}: ${JSON.stringify(s.slice(0, 60))}`);
  if (s.replace(ENTITY, '').includes('&')) throw new Error(`unescaped '&' in ${where}: ${JSON.stringify(s.slice(0, 60))}`);
}

/** Throws on the first problem; returns the root element and every element in document order. */
export function checkXml(doc: string, options: { html?: boolean } = {}): { root: XmlElement; elements: XmlElement[] } {
  const voidHtml = new Set(['meta', 'br', 'hr', 'img', 'link', 'input']);
  const stack: string[] = [];
  const elements: XmlElement[] = [];
  let root: XmlElement | null = null;
  let rootClosed = false;
  let i = 0;
  while (i < doc.length) {
    const lt = doc.indexOf('<', i);
    const text = doc.slice(i, lt < 0 ? doc.length : lt);
    if (stack.length === 0 && text.trim() !== '') throw new Error(`text outside the root element: ${JSON.stringify(text.slice(0, 40))}`);
    checkText(text, 'text');
    if (lt < 0) break;
    if (doc.startsWith('<!--', lt)) {
      const end = doc.indexOf('-->', lt);
      if (end < 0) throw new Error('unterminated comment');
      i = end + 3;
      continue;
    }
    if (doc.startsWith('<?', lt) || doc.startsWith('<!DOCTYPE', lt) || doc.startsWith('<!doctype', lt)) {
      const end = doc.indexOf('>', lt);
      if (end < 0) throw new Error('unterminated declaration');
      i = end + 1;
      continue;
    }
    const gt = doc.indexOf('>', lt);
    if (gt < 0) throw new Error('unterminated tag');
    const tag = doc.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open ?? 'nothing'}>`);
      if (stack.length === 0) rootClosed = true;
      i = gt + 1;
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z][\w:.-]*)([\s\S]*)$/.exec(body);
    if (!m) throw new Error(`bad tag <${tag.slice(0, 40)}>`);
    const name = m[1]!;
    const attrs: Record<string, string> = {};
    let rest = m[2]!;
    const attrRe = /^\s+([A-Za-z_:][\w:.-]*)\s*=\s*("([^"]*)"|'([^']*)')/;
    for (;;) {
      const a = attrRe.exec(rest);
      if (!a) break;
      if (a[1]! in attrs) throw new Error(`attribute ${a[1]} repeated on <${name}>`);
      const value = a[3] ?? a[4] ?? '';
      checkText(value, `attribute ${a[1]} of <${name}>`);
      attrs[a[1]!] = value;
      rest = rest.slice(a[0].length);
    }
    if (rest.trim() !== '') throw new Error(`malformed attributes on <${name}>: ${JSON.stringify(rest.slice(0, 40))}`);
    if (rootClosed) throw new Error(`a second root element <${name}>`);
    const el = { name, attrs };
    elements.push(el);
    if (!root) root = el;
    if (!selfClosing && !(options.html && voidHtml.has(name))) stack.push(name);
    else if (stack.length === 0) rootClosed = true;
    i = gt + 1;
    // <style> and <script> hold raw text in HTML
    if (options.html && (name === 'style' || name === 'script') && !selfClosing) {
      const end = doc.indexOf(`</${name}>`, i);
      if (end < 0) throw new Error(`unterminated <${name}>`);
      i = end;
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('> <')}>`);
  if (!root) throw new Error('no root element');
  return { root, elements };
}
