// A reply's Markdown as a fragment that is safe to put in the page. A reply is whatever a model
// wrote, and a model repeats what it was shown: two walls stand between its text and the DOM.
//   1. marked renders raw HTML in the text as the characters it is (`<b>` shows as `<b>`), and an
//      image as a link to it (an image loads by itself, and its URL could carry the conversation
//      to a stranger's server; the page's CSP blocks that too, a copy of the page elsewhere may not).
//   2. DOMPurify keeps only the elements and attributes Markdown makes, and drops any URL that is
//      not http(s), mailto or relative (`[x](javascript:...)` keeps its text, loses its href).
// Links open in a new tab without a handle on this one. Code blocks in a language below are
// highlighted by highlight.js (its core and a few grammars, to stay small); others stay plain.
import { Marked } from 'marked'
import DOMPurify from 'dompurify'
import hljs from 'highlight.js/core.js'
import bash from 'highlight.js/languages/bash.js'
import css from 'highlight.js/languages/css.js'
import diff from 'highlight.js/languages/diff.js'
import javascript from 'highlight.js/languages/javascript.js'
import json from 'highlight.js/languages/json.js'
import python from 'highlight.js/languages/python.js'
import sql from 'highlight.js/languages/sql.js'
import typescript from 'highlight.js/languages/typescript.js'
import xml from 'highlight.js/languages/xml.js'
import yaml from 'highlight.js/languages/yaml.js'

const LANGUAGES = { bash, css, diff, javascript, json, python, sql, typescript, xml, yaml }
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar)

const markdown = new Marked({
  gfm: true,
  breaks: true, // a model's single line breaks are meant as line breaks
  renderer: {
    html: ({ text, block }) => (block ? `<p>${asText(text.trim())}</p>` : asText(text)),
    image: ({ href, text }) => `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`,
    code: ({ text, lang }) => codeBlock(text, (lang ?? '').split(/\s/)[0].toLowerCase()),
  },
})

const purify = DOMPurify(window)
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
})
const ALLOWED = {
  ALLOWED_TAGS: ['a', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'input',
    'li', 'ol', 'p', 'pre', 'span', 'strong', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul'],
  ALLOWED_ATTR: ['align', 'checked', 'class', 'disabled', 'href', 'start', 'title', 'type'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
}

/** Markdown text -> a DocumentFragment holding only safe elements. */
export function renderMarkdown(text) {
  return purify.sanitize(markdown.parse(text).trim(), ALLOWED)
}

function codeBlock(text, language) {
  const body = hljs.getLanguage(language) ? hljs.highlight(text, { language, ignoreIllegals: true }).value : escapeHtml(text)
  const named = language ? ` language-${escapeHtml(language)}` : ''
  return `<pre><code class="hljs${named}">${body}</code></pre>`
}

function asText(html) {
  return escapeHtml(html).replaceAll('\n', '<br>')
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
