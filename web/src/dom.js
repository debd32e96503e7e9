// Building the page's elements. Text goes in through `textContent` only, never `innerHTML`:
// a message or a reply is whatever a user or a model wrote, `<img onerror=...>` included, and
// must show as those characters.

/** h('button', {class: 'x', onclick: fn, 'data-id': id}, 'text', child...) */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value)
    else if (name === 'value') element.value = value
    else element.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue
    element.append(typeof child === 'string' ? document.createTextNode(child) : child)
  }
  return element
}

export function $(selector) {
  return document.querySelector(selector)
}

export function show(selector, visible) {
  $(selector).hidden = !visible
}

export function say(selector, text) {
  $(selector).textContent = text ?? ''
}
