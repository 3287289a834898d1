import type { DemoPerson } from './people.js';

/** Text made safe for HTML content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** Chinese first, then the English in parentheses, marked as English for screen readers. */
const both = (zh: string, en: string) => `${escapeHtml(zh)} <span lang="en">(${escapeHtml(en)})</span>`;

const STYLE = `body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:0;background:#f4f6f8;color:#1b1f24;line-height:1.6}
main{max-width:32rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border:1px solid #d0d7de;border-radius:6px}
h1{font-size:1.5rem;margin-top:0}label{display:block;font-weight:600;margin-top:1rem}
input{box-sizing:border-box;width:100%;font:inherit;padding:.5rem;border:1px solid #57606a;border-radius:4px}
button{font:inherit;margin-top:1.25rem;margin-right:.5rem;padding:.5rem 1.25rem;border-radius:4px;border:1px solid #1f4f8a;background:#1f4f8a;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f4f8a}.notice{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .75rem;border-radius:4px}
.error{background:#ffebe9;border:1px solid #cf222e;padding:.5rem .75rem;border-radius:4px}a{color:#0a4fa6}
:focus-visible{outline:3px solid #0a4fa6;outline-offset:2px}`;

function page(title: [string, string], body: string): string {
  return `<!DOCTYPE html>
<html lang="zh-Hans">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(`${title[0]}（${title[1]}）`)} · 演示身份提供方</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>`;
}

const NOTICE = `<p class="notice">${both(
  '这是网关内置的演示身份提供方，只用于演示，请勿用于真实身份。演示人员的用户名和密码在 data/demo-credentials.json（PGlite 数据目录旁）的 people 中。',
  'This is the demo identity provider built into the gateway, for the demo only. The usernames and passwords of the demo people are under "people" in data/demo-credentials.json, beside the PGlite data directory.',
)}</p>`;

const ROLE_NAMES: Record<DemoPerson['role'], [string, string]> = {
  supervisor: ['电子监察', 'supervisor'],
  provider: ['学籍数据提供部门', 'student-status provider'],
  consumer: ['就业补贴审核部门', 'consumer agency'],
  citizen: ['市民', 'citizen'],
};

export interface LoginPageInput {
  /** Where the form posts. */
  action: string;
  /** Who asked for the sign-in (the client's id). */
  client: string;
  people: readonly DemoPerson[];
  /** The username typed, shown again after a wrong password. */
  username?: string;
  failed?: boolean;
}

/** The sign-in form: username and password, the demo people named (never their passwords). */
export function loginPage({ action, client, people, username = '', failed = false }: LoginPageInput): string {
  const error = failed
    ? `<p class="error" id="login-error" role="alert">${both('用户名或密码不正确，请重试。', 'The username or password is wrong; try again.')}</p>`
    : '';
  const described = failed ? ' aria-describedby="login-error"' : '';
  const list = people
    .map((person) => `<li><code>${escapeHtml(person.username)}</code>：${escapeHtml(person.name)}，${both(...ROLE_NAMES[person.role])}</li>`)
    .join('\n');
  return page(
    ['登录', 'Sign in'],
    `<h1>${both('登录', 'Sign in')}</h1>
${NOTICE}
<p>${both(`登录后回到：${client}`, `After signing in you return to: ${client}`)}</p>
${error}
<form method="post" action="${escapeHtml(action)}">
<label for="username">${both('用户名', 'Username')}</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required value="${escapeHtml(username)}"${described}>
<label for="password">${both('密码', 'Password')}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${described}>
<button type="submit">${both('登录', 'Sign in')}</button>
</form>
<h2>${both('演示人员', 'Demo people')}</h2>
<ul>
${list}
</ul>`,
  );
}

/** RP-initiated logout: oidc-provider's hidden form (its action and xsrf token), confirmed by a button. */
export function logoutPage(form: string): string {
  return page(
    ['退出登录', 'Sign out'],
    `<h1>${both('退出登录', 'Sign out')}</h1>
${NOTICE}
<p>${both('要退出演示身份提供方的登录吗？', 'Do you want to sign out of the demo identity provider?')}</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>${both('退出', 'Sign out')}</button>
<button type="submit" form="op.logoutForm" class="secondary">${both('保持在身份提供方的登录', 'Stay signed in to the identity provider')}</button>`,
  );
}

/** After a logout that had no post_logout_redirect_uri. */
export function signedOutPage(home: string): string {
  return page(
    ['已退出', 'Signed out'],
    `<h1>${both('已退出', 'Signed out')}</h1>
<p>${both('你已退出演示身份提供方。', 'You have signed out of the demo identity provider.')}</p>
<p><a href="${escapeHtml(home)}">${both('回到网关', 'Back to the gateway')}</a></p>`,
  );
}

/** An OAuth error the provider shows rather than redirects (RFC 6749 §4.1.2.1: no trusted redirect URI). */
export function errorPage(out: { error?: unknown; error_description?: unknown }, home: string): string {
  return page(
    ['登录出错', 'Sign-in error'],
    `<h1>${both('登录出错', 'Sign-in error')}</h1>
<p role="alert"><code>${escapeHtml(out.error ?? 'server_error')}</code>${out.error_description ? `：<span lang="en">${escapeHtml(out.error_description)}</span>` : ''}</p>
<p><a href="${escapeHtml(home)}">${both('回到网关重新登录', 'Back to the gateway to sign in again')}</a></p>`,
  );
}

/** The login form of an interaction this browser does not hold (expired, or started elsewhere). */
export function expiredPage(home: string): string {
  return page(
    ['登录已过期', 'Sign-in expired'],
    `<h1>${both('登录已过期', 'Sign-in expired')}</h1>
<p role="alert">${both('这次登录已过期，或不是在这个浏览器中开始的。', 'This sign-in has expired, or was not started in this browser.')}</p>
<p><a href="${escapeHtml(home)}">${both('回到网关重新登录', 'Back to the gateway to sign in again')}</a></p>`,
  );
}
