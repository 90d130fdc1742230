// A table whose columns sort when their header is pressed: click, Enter or Space.
//
// Each header holds a real <button> (so it is in the tab order and works with
// any keyboard or switch device); the sorted column's <th> carries aria-sort,
// and the change is announced. Rows are re-ordered in place, so a row keeps
// its element (and its data-testid) whatever the order. Empty values (null)
// sort last in both directions; ties keep the server's order.

import { h } from "./dom.js";
import { t } from "./i18n.js";
import { compareText } from "./admin-format.js";

// The sort chosen for each table (by its testid) survives a re-render
// (a language switch, a refresh of a live lesson's report).
const chosen = new Map();

function compareValues(a, b, numeric) {
  if (numeric) {
    return a - b;
  }
  return compareText(a, b);
}

/**
 * columns: [{key, label: i18n key, numeric (right-aligned, compared as numbers),
 *            compare: "number" (compared as numbers, aligned as text), sort: row => value,
 *            cell: row => Node|string, header (the row's header cell), className}]
 * Returns the wrapper element (a scrollable, labelled region holding the table).
 */
export function sortableTable({ testid, labelledBy, columns, rows, rowTestid, rowData, announce }) {
  const headerCells = [];
  const body = h("tbody");
  const items = rows.map((row, index) => {
    const tr = h("tr", {
      testid: rowTestid ? rowTestid(row) : undefined,
      dataset: rowData ? rowData(row) : undefined,
    });
    for (const column of columns) {
      const content = column.cell(row);
      const cell = h(column.header ? "th" : "td", {
        class: [column.numeric ? "num" : "", column.className || ""].join(" ").trim() || undefined,
        scope: column.header ? "row" : undefined,
      });
      cell.append(content ?? "—");
      tr.append(cell);
    }
    body.append(tr);
    return { row, index, tr };
  });

  function apply(state, { speak = false } = {}) {
    const column = columns.find((c) => c.key === state.key);
    if (!column) {
      return;
    }
    const direction = state.direction === "descending" ? -1 : 1;
    const value = column.sort || ((row) => row[column.key]);
    const sorted = [...items].sort((x, y) => {
      const a = value(x.row);
      const b = value(y.row);
      const aEmpty = a === null || a === undefined || a === "";
      const bEmpty = b === null || b === undefined || b === "";
      if (aEmpty || bEmpty) {
        return aEmpty === bEmpty ? x.index - y.index : aEmpty ? 1 : -1;
      }
      return direction * compareValues(a, b, column.numeric || column.compare === "number") || x.index - y.index;
    });
    for (const item of sorted) {
      body.append(item.tr);
    }
    headerCells.forEach(({ th, key }) => {
      if (key === state.key) {
        th.setAttribute("aria-sort", state.direction);
      } else {
        th.removeAttribute("aria-sort");
      }
    });
    chosen.set(testid, state);
    if (speak && announce) {
      announce(
        t("admin.table.sorted", {
          column: t(column.label),
          direction: t(state.direction === "descending" ? "admin.table.descending" : "admin.table.ascending"),
        }),
      );
    }
  }

  const headRow = h("tr");
  for (const column of columns) {
    const th = h("th", {
      scope: "col",
      class: [column.numeric ? "num" : "", column.className || ""].join(" ").trim() || undefined,
      dataset: { key: column.key },
    });
    if (column.sortable === false) {
      th.append(h("span", { i18n: column.label }));
    } else {
      const button = h(
        "button",
        {
          type: "button",
          class: "sort",
          testid: `${testid}-sort-${column.key}`,
          onclick: () => {
            const current = chosen.get(testid);
            const direction =
              current && current.key === column.key && current.direction === "ascending" ? "descending" : "ascending";
            apply({ key: column.key, direction }, { speak: true });
          },
        },
        h("span", { i18n: column.label }),
        h("span", { class: "sort-icon", "aria-hidden": "true" }),
      );
      th.append(button);
    }
    headerCells.push({ th, key: column.key });
    headRow.append(th);
  }

  const table = h(
    "table",
    { class: "report-table", testid, "aria-labelledby": labelledBy },
    h("thead", {}, headRow),
    body,
  );
  const remembered = chosen.get(testid);
  if (remembered) {
    apply(remembered);
  }
  // A region that scrolls sideways on a phone must be reachable by keyboard to scroll.
  return h("div", { class: "table-wrap", role: "region", "aria-labelledby": labelledBy, tabindex: "0" }, table);
}
