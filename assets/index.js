// Landing page: the pages this key opens.
import { $, el, whoami, fail } from "/assets/common.js";

const ROLE_NAMES = {
  admin: "Quản trị",
  operator: "Kỹ thuật viên tỉnh",
  secretary: "Thư ký điều hành",
  display: "Màn hình hội trường",
  site: "Điểm cầu",
};

async function main() {
  try {
    const me = await whoami();
    $("#who").textContent = `Khoá: ${ROLE_NAMES[me.role]}${me.site ? ` — ${me.site.name}` : ""}`;
    $("#pages").replaceChildren(...me.pages.map((p) => el("li", {}, el("a", { href: p.path }, p.title))));
    $("#downloads").replaceChildren(
      ...me.downloads.map((d) => el("li", {}, el("a", { href: d.path, download: true }, d.title))),
    );
    $("#downloads-title").classList.toggle("hidden", me.downloads.length === 0);
  } catch (error) {
    fail(error.message);
  }
}

main();
