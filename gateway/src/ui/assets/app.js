// Switchyard admin UI: small progressive enhancements. Every page works server-rendered;
// this adds copy buttons, confirmations and the fallback editor (add, reorder, remove,
// override / no fallbacks / inherit), with checks before saving. The server checks again.
(function () {
  'use strict';

  document.querySelectorAll('[data-copy]').forEach(function (btn) {
    btn.addEventListener('click', function () {
      var input = document.getElementById(btn.getAttribute('data-copy'));
      input.select();
      if (navigator.clipboard) { navigator.clipboard.writeText(input.value); }
      btn.textContent = 'Copied';
    });
  });
  document.querySelectorAll('form[data-confirm]').forEach(function (f) {
    f.addEventListener('submit', function (e) {
      if (!window.confirm(f.getAttribute('data-confirm'))) { e.preventDefault(); }
    });
  });

  document.querySelectorAll('input[type=file][data-load-into]').forEach(function (input) {
    input.addEventListener('change', function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      file.text().then(function (text) {
        document.getElementById(input.getAttribute('data-load-into')).value = text;
      });
    });
  });

  var root = document.getElementById('fallback-editor');
  if (!root) { return; }
  var cfg = JSON.parse(root.getAttribute('data-editor'));
  var level = cfg.level;
  var known = new Set(cfg.known);
  var groups = new Set(Object.keys(cfg.deployments).map(function (d) { return cfg.deployments[d]; }).concat(cfg.groups));
  var usable = cfg.usable ? new Set(cfg.usable) : null;
  var KINDS = ['fallbacks', 'context_window_fallbacks', 'content_policy_fallbacks', 'default_fallbacks'];
  var form = document.getElementById('settings-form');
  var textarea = document.getElementById('fallbacks_json');
  var problemsEl = document.getElementById('editor-problems');
  var saveBtn = document.getElementById('save-settings');

  // state[kind]: null (inherit) | [{group, targets}] | for default_fallbacks: null | [targets]
  var state = {};
  function fromWire(kind, v) {
    if (v === null || v === undefined) { return null; }
    if (kind === 'default_fallbacks') { return v.slice(); }
    return v.map(function (rule) {
      var g = Object.keys(rule)[0];
      var t = rule[g];
      return { group: g, targets: Array.isArray(t) ? t.slice() : [t] };
    });
  }
  function toWire() {
    var out = {};
    KINDS.forEach(function (k) {
      var v = state[k];
      if (v === null) { out[k] = null; return; }
      if (k === 'default_fallbacks') { out[k] = v.slice(); return; }
      out[k] = v.filter(function (r) { return r.targets.length > 0; }).map(function (r) {
        var o = {}; o[r.group] = r.targets.slice(); return o;
      });
    });
    return out;
  }
  function load(draft) { KINDS.forEach(function (k) { state[k] = fromWire(k, draft[k]); }); }
  load(cfg.draft);

  function groupOf(name) { return cfg.deployments[name] || name; }

  // Problems of one target within a chain, in plain words; '' when fine.
  function targetProblem(kind, group, target) {
    if (!known.has(target)) { return 'unknown: not a model group or deployment'; }
    if (group && target === group) { return 'falls back to itself'; }
    var g = groupOf(target);
    if (usable && groups.has(g) && !usable.has(g)) { return 'this ' + level + ' may not use it'; }
    return '';
  }
  function findCycle(rules) {
    var edges = {};
    rules.forEach(function (r) { edges[r.group] = (edges[r.group] || []).concat(r.targets); });
    var done = {}, stack = [];
    function visit(n) {
      var at = stack.indexOf(n);
      if (at >= 0) { return stack.slice(at).concat([n]); }
      if (done[n]) { return null; }
      stack.push(n);
      var next = edges[n] || [];
      for (var i = 0; i < next.length; i++) { var c = visit(next[i]); if (c) { return c; } }
      stack.pop(); done[n] = true; return null;
    }
    for (var g in edges) { var c = visit(g); if (c) { return c; } }
    return null;
  }
  function problems() {
    var out = [];
    KINDS.forEach(function (k) {
      var v = state[k];
      if (!v) { return; }
      var label = document.querySelector('[data-kind="' + k + '"] legend').textContent;
      if (k === 'default_fallbacks') {
        v.forEach(function (t) { var p = targetProblem(k, '', t); if (p) { out.push(label + ': ' + t + ' is ' + p); } });
        return;
      }
      v.forEach(function (r) {
        r.targets.forEach(function (t) { var p = targetProblem(k, r.group, t); if (p) { out.push(label + ': ' + t + ' (for ' + r.group + ') is ' + p); } });
      });
      var cycle = findCycle(v);
      if (cycle) { out.push(label + ' form a cycle: ' + cycle.join(' → ')); }
    });
    return out;
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (a) { e.setAttribute(a, attrs[a]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function badge(s) { return el('span', { 'class': 'badge src-' + s, title: 'set at ' + s + ' level' }, s); }
  function button(action, label, aria, disabled) {
    var b = el('button', { type: 'button', 'data-action': action }, label);
    if (aria) { b.setAttribute('aria-label', aria); }
    if (disabled) { b.disabled = true; }
    return b;
  }

  function rowsFor(kind) {
    if (kind === 'default_fallbacks') { return [{ group: '', targets: state[kind] }]; }
    var rules = state[kind];
    var names = cfg.groups.slice();
    rules.forEach(function (r) { if (names.indexOf(r.group) < 0) { names.push(r.group); } });
    return names.map(function (g) {
      var r = rules.find(function (x) { return x.group === g; });
      return { group: g, targets: r ? r.targets : [] };
    });
  }

  function renderKind(kind) {
    var fs = root.querySelector('[data-kind="' + kind + '"]');
    var own = fs.querySelector('[data-own]');
    own.textContent = '';
    var v = state[kind];
    var inherited = cfg.inherited[kind].source;
    var st = el('p', { 'class': 'state' });
    if (v === null) {
      st.append('Inherited from ', badge(inherited), '.');
    } else if (v.length === 0) {
      st.append(el('strong', {}, 'No fallbacks'), ', set at ' + level + ' level.');
    } else {
      st.append(el('strong', {}, 'Overridden'), ' at ' + level + ' level.');
    }
    own.append(st);
    var acts = el('div', { 'class': 'actions' });
    var overridden = v !== null && v.length > 0;
    acts.append(
      button('override', 'Override at ' + level + ' level', null, overridden),
      button('none', 'No fallbacks', null, v !== null && v.length === 0),
      button('inherit', 'Clear override', null, v === null)
    );
    own.append(acts);
    if (v === null || (v.length === 0 && !fs.hasAttribute('data-editing'))) { return; }
    var ul = el('ul', { 'class': 'rules' });
    rowsFor(kind).forEach(function (r) {
      var name = r.group || 'any group';
      var li = el('li', { 'class': 'rule', 'data-group': r.group });
      li.append(el('span', { 'class': 'rule-group' }, name));
      var ol = el('ol', { 'class': 'targets' });
      r.targets.forEach(function (t, i) {
        var item = el('li', { 'class': 'item', 'data-index': String(i) });
        var p = targetProblem(kind, r.group, t);
        if (p) { item.classList.add('bad'); }
        item.append(el('span', { 'class': 'target' }, t));
        item.append(button('up', '↑', 'Move ' + t + ' up in the chain of ' + name, i === 0));
        item.append(button('down', '↓', 'Move ' + t + ' down in the chain of ' + name, i === r.targets.length - 1));
        item.append(button('remove', '✕', 'Remove ' + t + ' from the chain of ' + name));
        item.querySelectorAll('button').forEach(function (b) { b.classList.add('icon'); });
        if (p) { item.append(el('span', { 'class': 'problem' }, p)); }
        ol.append(item);
      });
      li.append(ol);
      var add = el('span', { 'class': 'add' });
      var id = 'add-' + kind + '-' + (r.group || 'any').replace(/[^A-Za-z0-9_-]/g, '_');
      add.append(el('label', { 'for': id, 'class': 'sr-only' }, 'Add a fallback target for ' + name));
      add.append(el('input', { id: id, list: 'known-targets', placeholder: 'add a group or deployment', 'data-add': '', autocomplete: 'off' }));
      add.append(button('add', 'Add', 'Add the target to the chain of ' + name));
      li.append(add);
      ul.append(li);
    });
    own.append(ul);
  }

  function sync(fromTextarea) {
    KINDS.forEach(renderKind);
    if (!fromTextarea) { textarea.value = JSON.stringify(toWire(), null, 2); }
    var p = problems();
    problemsEl.textContent = p.length ? 'Fix before saving: ' + p.join('; ') : '';
    saveBtn.disabled = p.length > 0;
  }

  function ruleOf(kind, group) {
    if (kind === 'default_fallbacks') { return { targets: state[kind] }; }
    var r = state[kind].find(function (x) { return x.group === group; });
    if (!r) { r = { group: group, targets: [] }; state[kind].push(r); }
    return r;
  }
  function refocus(kind, group, selector) {
    var fs = root.querySelector('[data-kind="' + kind + '"]');
    var li = Array.prototype.find.call(fs.querySelectorAll('li.rule'), function (x) { return x.getAttribute('data-group') === group; });
    var target = li && li.querySelector(selector);
    if (target && !target.disabled) { target.focus(); } else if (li) { li.querySelector('[data-add]').focus(); }
  }

  function addFrom(input) {
    var fs = input.closest('[data-kind]');
    var kind = fs.getAttribute('data-kind');
    var group = input.closest('li.rule').getAttribute('data-group');
    var name = input.value.trim();
    if (!name) { return; }
    var r = ruleOf(kind, group);
    if (r.targets.indexOf(name) < 0) { r.targets.push(name); }
    sync(false);
    refocus(kind, group, '[data-add]');
  }

  root.addEventListener('click', function (e) {
    var b = e.target.closest('button[data-action]');
    if (!b) { return; }
    var fs = b.closest('[data-kind]');
    var kind = fs.getAttribute('data-kind');
    var action = b.getAttribute('data-action');
    var ruleLi = b.closest('li.rule');
    var group = ruleLi ? ruleLi.getAttribute('data-group') : null;
    if (action === 'override') {
      var inh = cfg.inherited[kind].value;
      state[kind] = fromWire(kind, inh);
      fs.setAttribute('data-editing', '');
    } else if (action === 'none') {
      state[kind] = [];
      fs.removeAttribute('data-editing');
    } else if (action === 'inherit') {
      state[kind] = null;
      fs.removeAttribute('data-editing');
    } else if (action === 'add') {
      addFrom(ruleLi.querySelector('[data-add]'));
      return;
    } else {
      var i = Number(b.closest('li.item').getAttribute('data-index'));
      var t = ruleOf(kind, group).targets;
      if (action === 'up' && i > 0) { t.splice(i - 1, 0, t.splice(i, 1)[0]); i -= 1; }
      if (action === 'down' && i < t.length - 1) { t.splice(i + 1, 0, t.splice(i, 1)[0]); i += 1; }
      if (action === 'remove') { t.splice(i, 1); }
      sync(false);
      if (action === 'remove') {
        refocus(kind, group, '[data-add]');
      } else {
        // Keep focus on the moved entry: the same button, or the other one at either end.
        var other = action === 'up' ? 'down' : 'up';
        var item = 'li.item[data-index="' + i + '"] ';
        var li = root.querySelector('[data-kind="' + kind + '"]');
        var same = Array.prototype.find.call(li.querySelectorAll('li.rule'), function (x) { return x.getAttribute('data-group') === group; });
        var btn = same && same.querySelector(item + '[data-action="' + action + '"]');
        refocus(kind, group, btn && !btn.disabled ? item + '[data-action="' + action + '"]' : item + '[data-action="' + other + '"]');
      }
      return;
    }
    sync(false);
    var first = fs.querySelector('[data-add]') || fs.querySelector('button:not([disabled])');
    if (first) { first.focus(); }
  });
  root.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && e.target.hasAttribute('data-add')) {
      e.preventDefault();
      addFrom(e.target);
    }
  });
  textarea.addEventListener('input', function () {
    try {
      load(JSON.parse(textarea.value || '{}'));
      sync(true);
    } catch (err) {
      problemsEl.textContent = 'The JSON is not valid: ' + err.message;
      saveBtn.disabled = true;
    }
  });
  form.addEventListener('submit', function (e) {
    var p = problems();
    if (p.length) {
      e.preventDefault();
      problemsEl.textContent = 'Fix before saving: ' + p.join('; ');
      problemsEl.focus();
    }
  });
  // Kinds overridden with rules open in editing mode.
  KINDS.forEach(function (k) {
    if (state[k] && state[k].length) { root.querySelector('[data-kind="' + k + '"]').setAttribute('data-editing', ''); }
  });
  sync(false);
}());
