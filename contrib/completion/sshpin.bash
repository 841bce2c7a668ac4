# bash completion for sshpin and sshpin-ssh                          -*- shell-script -*-
#
# Installed with the package as share/bash-completion/completions/sshpin (bash-completion loads
# it on first use). Without bash-completion, one line in ~/.bashrc enables it:
#     source /path/to/contrib/completion/sshpin.bash
#
# Commands and options are listed here; provider names and hosts come from
# 'sshpin complete providers|hosts|pins', which reads local files only (the config, the
# cache's host entries, the pins), never the network.

_sshpin_names() {
    # $1: providers | hosts | pins; $2: the word being completed
    # (matched here, not with compgen -W, which would expand $(...) in a name)
    local prog=${COMP_WORDS[0]%-ssh} name
    type -P -- "$prog" >/dev/null 2>&1 || prog=sshpin
    while IFS= read -r name; do
        [[ $name == "$2"* ]] && COMPREPLY+=("$name")
    done < <("$prog" complete "$1" 2>/dev/null </dev/null)
}

_sshpin_words() {
    # $1: the words to offer; $2: the word being completed
    local IFS=$' \t\n'
    COMPREPLY+=($(compgen -W "$1" -- "$2"))
}

_sshpin() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()

    # the command, the cache action, and how many positional arguments come before the cursor
    local cmd= action= positional=0 word i skip=
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -n $skip ]]; then
            skip=
        elif [[ $word == --provider || $word == --api-url || $word == --ssh-config ||
            $word == -o || $word == --output || $word == --watch ]]; then
            skip=1
        elif [[ $word == -* ]]; then
            :
        elif [[ -z $cmd ]]; then
            cmd=$word
        elif [[ ($cmd == cache || $cmd == provider) && -z $action ]]; then
            action=$word
        else
            ((positional++))
        fi
    done
    [[ $cmd == ssh ]] && { _sshpin_names hosts "$cur"; return 0; }

    case $prev in
    --ssh-config | --ca-bundle | -o | --output)
        local IFS=$'\n'
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return 0
        ;;
    --provider)
        _sshpin_names providers "$cur"
        return 0
        ;;
    --api-url)
        _sshpin_words "https://" "$cur"
        return 0
        ;;
    esac

    local options="-h --help"
    case $cmd in
    '')
        if [[ $cur == -* ]]; then
            _sshpin_words "-h --help --version -v --verbose" "$cur"
        else
            _sshpin_words "known-hosts ssh proxy setup doctor login logout cache pin unpin
                fingerprints export provider publish demo" "$cur"
        fi
        return 0
        ;;
    setup) options+=" --provider --api-url --hosts --ca-bundle --ssh-config --undo --legacy" ;;
    doctor) options+=" --json --ssh-config --offline" ;;
    login | logout) ((positional == 0)) && [[ $cur != -* ]] && _sshpin_names providers "$cur" ;;
    pin | unpin | fingerprints | proxy)
        [[ $cmd == fingerprints ]] && options+=" --md5"
        if ((positional == 0)) && [[ $cur != -* ]]; then
            if [[ $cmd == unpin ]]; then
                _sshpin_names pins "$cur"
            else
                _sshpin_names hosts "$cur"
            fi
        fi
        ;;
    export)
        options+=" --all -o --output --watch"
        [[ $prev == --watch || $cur == -* ]] || _sshpin_names hosts "$cur"
        ;;
    provider)
        if [[ -z $action ]]; then
            [[ $cur == -* ]] || _sshpin_words "check" "$cur"
        else
            options+=" --url --signing-key --signing-key-file --ca-bundle --public --json"
        fi
        ;;
    publish) options+=" --keys-dir --inventory --account --api-url --out --sign-key --days" ;;
    known-hosts)
        ((positional == 0)) && _sshpin_words "ORDER HOSTNAME ADDRESS" "$cur"
        ((positional == 1)) && _sshpin_names hosts "$cur"
        ;;
    cache)
        if [[ -z $action ]]; then
            [[ $cur == -* ]] || _sshpin_words "list show refresh clear history" "$cur"
        else
            case $action in
            list) options+=" --json" ;;
            show | history) options+=" --json" ;;
            refresh | clear) options+=" --all" ;;
            esac
            if [[ $action != list ]] && ((positional == 0)) && [[ $cur != -* ]]; then
                _sshpin_names hosts "$cur"
            fi
        fi
        ;;
    esac
    [[ $cur == -* ]] && _sshpin_words "$options" "$cur"
    return 0
}

_sshpin_ssh() {
    # sshpin-ssh takes ssh's arguments: offer the hosts sshpin knows
    COMPREPLY=()
    [[ ${COMP_WORDS[COMP_CWORD]} == -* ]] || _sshpin_names hosts "${COMP_WORDS[COMP_CWORD]}"
    return 0
}

complete -F _sshpin sshpin
complete -F _sshpin_ssh sshpin-ssh
